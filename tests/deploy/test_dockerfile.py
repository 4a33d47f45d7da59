"""The Dockerfile, read without docker: what it copies exists, it runs as a non-root user
with the data directory on a volume, and its entry point is dcounter-node with real flags."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from dcounter_node._cli import settings_from_args
from dcounter_node._settings import load_config_file
from dcounter_protocol import parse_address

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


def arguments(keyword: str) -> list[str]:
    return [i.arguments for i in instructions() if i.keyword == keyword]


def exec_form(text: str) -> list[str]:
    words: list[str] = json.loads(text)
    assert isinstance(words, list)
    return words


def copied_config() -> dict[str, str]:
    """Image path -> repository file, for each file COPY takes from the checkout."""
    copies: dict[str, str] = {}
    for text in arguments("COPY"):
        if text.startswith("--from"):
            continue
        *sources, target = shlex.split(text)
        for source in sources:
            copies[target] = source
    return copies


def test_every_file_it_copies_from_the_checkout_exists() -> None:
    copies = copied_config()
    assert copies
    for source in copies.values():
        assert (REPO / source).exists(), source
    # The three distributions a node needs, each buildable on its own.
    for package in ("crdt", "protocol", "node"):
        assert copies[f"packages/{package}"] == f"packages/{package}"
        assert (REPO / "packages" / package / "pyproject.toml").is_file()


def test_it_builds_on_a_slim_python_and_runs_as_a_non_root_user() -> None:
    images = [text.split()[0] for text in arguments("FROM")]
    assert images
    assert all(image.startswith("python:") and image.endswith("-slim") for image in images)
    users = arguments("USER")
    assert len(users) == 1
    uid = users[0].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    # The user switch comes after every RUN that needs root.
    keywords = [i.keyword for i in instructions()]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")


def test_the_entry_point_is_dcounter_node_with_real_flags_and_data_on_the_volume() -> None:
    (entry,) = arguments("ENTRYPOINT")
    argv = exec_form(entry)
    assert argv[0] == "dcounter-node"
    image_config = argv[argv.index("--config") + 1]
    repo_config = REPO / copied_config()[image_config]
    flags = [repo_config if a == image_config else a for a in argv[1:]]

    settings = settings_from_args([str(f) for f in flags] + ["--advertise", "10.0.0.7:7946"])

    assert settings == load_config_file(repo_config).settings(None).updated(
        {"advertise": "10.0.0.7:7946"}
    )
    (volume,) = arguments("VOLUME")
    assert exec_form(volume) == [settings.data_dir]
    assert not settings.in_memory
    exposed = {int(port) for text in arguments("EXPOSE") for port in text.split()}
    assert exposed == {parse_address(settings.listen)[1], parse_address(settings.http)[1]}


def test_the_health_check_asks_the_http_port_for_health() -> None:
    (check,) = arguments("HEALTHCHECK")
    command = exec_form(check[check.index("CMD") + len("CMD") :].strip())
    config = REPO / copied_config()["/etc/dcounter/node.toml"]
    port = parse_address(load_config_file(config).settings(None).http)[1]
    assert f"http://127.0.0.1:{port}/health" in command[-1]
