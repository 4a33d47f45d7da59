"""``dcounter-frames``: decode seed frames and messages, watch or proxy live gossip."""

from __future__ import annotations

from dcounter_tools.frames.inspection import Inspection as Inspection
from dcounter_tools.frames.inspection import Problem as Problem
from dcounter_tools.frames.inspection import inspect_bytes as inspect_bytes
from dcounter_tools.frames.listen import FrameEvent as FrameEvent
from dcounter_tools.frames.listen import FrameListener as FrameListener
from dcounter_tools.frames.proxy import FrameProxy as FrameProxy

__all__ = ["FrameEvent", "FrameListener", "FrameProxy", "Inspection", "Problem", "inspect_bytes"]
