"""dcounter_protocol: the seed's wire protocol, byte-compatible with the Go reference.

Sans-IO core: :mod:`~dcounter_protocol._message` (messages; their codec in
:mod:`~dcounter_protocol._message_encoder` and :mod:`~dcounter_protocol._message_decoder`),
:mod:`~dcounter_protocol._digest` (state digest), :mod:`~dcounter_protocol._framing`
(seed TCP frames) and :mod:`~dcounter_protocol._stream` (stream mode). Thin asyncio
adapters: :mod:`~dcounter_protocol._transport` (the seam),
:mod:`~dcounter_protocol._tcp` and :mod:`~dcounter_protocol._memory`. Errors:
:mod:`~dcounter_protocol._errors`, all under :class:`ProtocolError`.
"""

from __future__ import annotations

from dcounter_protocol.__about__ import __version__ as __version__
from dcounter_protocol._address import FRAME_OVERHEAD as FRAME_OVERHEAD
from dcounter_protocol._address import MAX_ADDRESS_LENGTH as MAX_ADDRESS_LENGTH
from dcounter_protocol._address import format_address as format_address
from dcounter_protocol._address import parse_address as parse_address
from dcounter_protocol._digest import serialize_state as serialize_state
from dcounter_protocol._digest import state_digest as state_digest
from dcounter_protocol._errors import BindError as BindError
from dcounter_protocol._errors import ConnectError as ConnectError
from dcounter_protocol._errors import CountOutOfRangeError as CountOutOfRangeError
from dcounter_protocol._errors import DecompressionError as DecompressionError
from dcounter_protocol._errors import EmptyMessageError as EmptyMessageError
from dcounter_protocol._errors import EmptyNodeIdError as EmptyNodeIdError
from dcounter_protocol._errors import EmptyPushError as EmptyPushError
from dcounter_protocol._errors import EmptyStreamFrameError as EmptyStreamFrameError
from dcounter_protocol._errors import EncodeError as EncodeError
from dcounter_protocol._errors import FrameError as FrameError
from dcounter_protocol._errors import FrameTooLargeError as FrameTooLargeError
from dcounter_protocol._errors import HandshakeError as HandshakeError
from dcounter_protocol._errors import InvalidAddressError as InvalidAddressError
from dcounter_protocol._errors import InvalidAddressLengthError as InvalidAddressLengthError
from dcounter_protocol._errors import InvalidFlagError as InvalidFlagError
from dcounter_protocol._errors import InvalidMessageTypeError as InvalidMessageTypeError
from dcounter_protocol._errors import InvalidOptionError as InvalidOptionError
from dcounter_protocol._errors import LocalProtocolError as LocalProtocolError
from dcounter_protocol._errors import MalformedAddressError as MalformedAddressError
from dcounter_protocol._errors import MalformedMessageError as MalformedMessageError
from dcounter_protocol._errors import MessageError as MessageError
from dcounter_protocol._errors import MessageTooLargeError as MessageTooLargeError
from dcounter_protocol._errors import NamedMessageError as NamedMessageError
from dcounter_protocol._errors import OversizeMessageError as OversizeMessageError
from dcounter_protocol._errors import ProtocolError as ProtocolError
from dcounter_protocol._errors import RemoteProtocolError as RemoteProtocolError
from dcounter_protocol._errors import TransportClosedError as TransportClosedError
from dcounter_protocol._errors import TransportError as TransportError
from dcounter_protocol._errors import TransportTimeoutError as TransportTimeoutError
from dcounter_protocol._errors import TruncatedFrameError as TruncatedFrameError
from dcounter_protocol._framing import DEFAULT_MAX_FRAME_SIZE as DEFAULT_MAX_FRAME_SIZE
from dcounter_protocol._framing import Frame as Frame
from dcounter_protocol._framing import FrameDecoder as FrameDecoder
from dcounter_protocol._framing import decode_frame as decode_frame
from dcounter_protocol._framing import encode_frame as encode_frame
from dcounter_protocol._memory import MemoryNetwork as MemoryNetwork
from dcounter_protocol._memory import MemoryTransport as MemoryTransport
from dcounter_protocol._message import COMPRESSION_THRESHOLD as COMPRESSION_THRESHOLD
from dcounter_protocol._message import DEFAULT_MAX_MESSAGE_SIZE as DEFAULT_MAX_MESSAGE_SIZE
from dcounter_protocol._message import FLAG_COMPRESSED as FLAG_COMPRESSED
from dcounter_protocol._message import FLAG_PLAIN as FLAG_PLAIN
from dcounter_protocol._message import DigestAck as DigestAck
from dcounter_protocol._message import DigestPull as DigestPull
from dcounter_protocol._message import Message as Message
from dcounter_protocol._message import MessageType as MessageType
from dcounter_protocol._message import Push as Push
from dcounter_protocol._message_decoder import decode_message as decode_message
from dcounter_protocol._message_encoder import encode_message as encode_message
from dcounter_protocol._named import MAX_NAMED_BUCKETS as MAX_NAMED_BUCKETS
from dcounter_protocol._named import NAMED_MAGIC as NAMED_MAGIC
from dcounter_protocol._named import NamedBuckets as NamedBuckets
from dcounter_protocol._named import NamedKeys as NamedKeys
from dcounter_protocol._named import NamedKind as NamedKind
from dcounter_protocol._named import NamedMessage as NamedMessage
from dcounter_protocol._named import NamedPull as NamedPull
from dcounter_protocol._named import NamedPush as NamedPush
from dcounter_protocol._named import NamedWant as NamedWant
from dcounter_protocol._named import decode_named as decode_named
from dcounter_protocol._named import encode_named as encode_named
from dcounter_protocol._named import is_named as is_named
from dcounter_protocol._named import split_named as split_named
from dcounter_protocol._named_digest import NAMED_BUCKETS as NAMED_BUCKETS
from dcounter_protocol._named_digest import BucketDigests as BucketDigests
from dcounter_protocol._named_digest import key_bucket as key_bucket
from dcounter_protocol._named_digest import key_hash as key_hash
from dcounter_protocol._stream import CAP_MEMBERSHIP as CAP_MEMBERSHIP
from dcounter_protocol._stream import CAP_NAMED as CAP_NAMED
from dcounter_protocol._stream import STREAM_ACK as STREAM_ACK
from dcounter_protocol._stream import STREAM_MAGIC as STREAM_MAGIC
from dcounter_protocol._stream import STREAM_MARKER as STREAM_MARKER
from dcounter_protocol._stream import STREAM_VERSION as STREAM_VERSION
from dcounter_protocol._stream import STREAM_VERSION_CAPS as STREAM_VERSION_CAPS
from dcounter_protocol._stream import StreamDecoder as StreamDecoder
from dcounter_protocol._stream import encode_ack as encode_ack
from dcounter_protocol._stream import encode_hello as encode_hello
from dcounter_protocol._stream import encode_stream_frames as encode_stream_frames
from dcounter_protocol._stream import parse_ack as parse_ack
from dcounter_protocol._tcp import TCPOptions as TCPOptions
from dcounter_protocol._tcp import TCPTransport as TCPTransport
from dcounter_protocol._tcp import TLSOptions as TLSOptions
from dcounter_protocol._tcp import TransportStats as TransportStats
from dcounter_protocol._tcp import WireMode as WireMode
from dcounter_protocol._tcp import received_capabilities as received_capabilities
from dcounter_protocol._transport import HandleNow as HandleNow
from dcounter_protocol._transport import Handler as Handler
from dcounter_protocol._transport import Transport as Transport

__all__ = [
    "CAP_MEMBERSHIP",
    "CAP_NAMED",
    "COMPRESSION_THRESHOLD",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "FLAG_COMPRESSED",
    "FLAG_PLAIN",
    "FRAME_OVERHEAD",
    "MAX_ADDRESS_LENGTH",
    "MAX_NAMED_BUCKETS",
    "NAMED_BUCKETS",
    "NAMED_MAGIC",
    "STREAM_ACK",
    "STREAM_MAGIC",
    "STREAM_MARKER",
    "STREAM_VERSION",
    "STREAM_VERSION_CAPS",
    "BindError",
    "BucketDigests",
    "ConnectError",
    "CountOutOfRangeError",
    "DecompressionError",
    "DigestAck",
    "DigestPull",
    "EmptyMessageError",
    "EmptyNodeIdError",
    "EmptyPushError",
    "EmptyStreamFrameError",
    "EncodeError",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "FrameTooLargeError",
    "HandleNow",
    "Handler",
    "HandshakeError",
    "InvalidAddressError",
    "InvalidAddressLengthError",
    "InvalidFlagError",
    "InvalidMessageTypeError",
    "InvalidOptionError",
    "LocalProtocolError",
    "MalformedAddressError",
    "MalformedMessageError",
    "MemoryNetwork",
    "MemoryTransport",
    "Message",
    "MessageError",
    "MessageTooLargeError",
    "MessageType",
    "NamedBuckets",
    "NamedKeys",
    "NamedKind",
    "NamedMessage",
    "NamedMessageError",
    "NamedPull",
    "NamedPush",
    "NamedWant",
    "OversizeMessageError",
    "ProtocolError",
    "Push",
    "RemoteProtocolError",
    "StreamDecoder",
    "TCPOptions",
    "TCPTransport",
    "TLSOptions",
    "Transport",
    "TransportClosedError",
    "TransportError",
    "TransportStats",
    "TransportTimeoutError",
    "TruncatedFrameError",
    "WireMode",
    "__version__",
    "decode_frame",
    "decode_message",
    "decode_named",
    "encode_ack",
    "encode_frame",
    "encode_hello",
    "encode_message",
    "encode_named",
    "encode_stream_frames",
    "format_address",
    "is_named",
    "key_bucket",
    "key_hash",
    "parse_ack",
    "parse_address",
    "received_capabilities",
    "serialize_state",
    "split_named",
    "state_digest",
]
