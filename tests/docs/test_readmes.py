"""Every code block in every README runs as shown (or is marked as something that cannot).

A block's info string is its language and, optionally, one tag (see "Code in these READMEs"
in the repository's README):

- ``python``: a complete program, run in a fresh interpreter;
- ``toml``: a config file ``dcounter-node --config`` accepts; ``json``: valid JSON;
- ``sh`` / ``console``: commands (``console`` ones after ``$ ``), run in one shell in a
  private network, pid and mount namespace (fixed ports are free there, and every process the
  block leaves behind dies with it) with a fresh home directory. Helpers the test inserts
  wait, as a person typing would, for a node started with ``&`` to serve and for the nodes to
  agree before each ``curl``; a trailing ``# {...}`` comment is JSON the command must print;
- tag ``cluster``: the block runs with the three nodes of the README's "Running nodes
  yourself" up first;
- tag ``dev`` (Hatch and pip, which would build or recurse into this suite): every
  ``hatch run NAME`` names a script or an installed command, and every path exists;
- tag ``fragment`` and language ``text``: not run (an excerpt; output or notation).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from dcounter_node import parse_config

REPO_ROOT = Path(__file__).resolve().parents[2]
READMES = sorted(
    path.relative_to(REPO_ROOT)
    for path in REPO_ROOT.glob("**/README.md")
    if not any(part.startswith(".") or part in {"build", "dist"} for part in path.parts)
)
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
_LANGUAGES = {"python", "toml", "json", "sh", "console", "text"}
_TAGS = {"", "cluster", "dev", "fragment"}
#: Whole blocks; the cluster runs (kill and partition faults) take the longest.
BLOCK_TIMEOUT = 180


@dataclass(frozen=True)
class Block:
    readme: Path
    line: int
    language: str
    tag: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.readme}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for readme in READMES:
        text = (REPO_ROOT / readme).read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            language, _, tag = match.group(1).strip().partition(" ")
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(readme, line, language, tag.strip(), match.group(2)))
    return found


BLOCKS = _blocks()


def _of(language: str, *tags: str) -> list[Block]:
    return [b for b in BLOCKS if b.language == language and b.tag in tags]


def _params(blocks: list[Block]) -> list[object]:
    return [pytest.param(block, id=block.id) for block in blocks]


def test_every_block_says_what_it_is() -> None:
    unknown = [b.id for b in BLOCKS if b.language not in _LANGUAGES or b.tag not in _TAGS]
    assert unknown == [], "give these blocks a known language and tag"
    assert {b.readme.as_posix() for b in BLOCKS} >= {
        "README.md",
        "packages/crdt/README.md",
        "packages/node/README.md",
        "packages/protocol/README.md",
        "tools/README.md",
    }


# -- python and toml ----------------------------------------------------------------------


@pytest.mark.parametrize("block", _params(_of("python", "")))
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(block.text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("block", _params(_of("toml", "") + _of("json", "")))
def test_data_block_parses(block: Block) -> None:
    if block.language == "json":
        json.loads(block.text)  # ValueError if not
    else:
        parse_config(tomllib.loads(block.text), source=block.id)  # ConfigError if not


# -- dev commands: only checked ---------------------------------------------------------------


def _hatch_scripts() -> set[str]:
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        config = tomllib.load(file)
    return set(config["tool"]["hatch"]["envs"]["default"]["scripts"])


def _distributions() -> set[str]:
    names = set()
    for pyproject in REPO_ROOT.glob("*/**/pyproject.toml"):
        with pyproject.open("rb") as file:
            names.add(tomllib.load(file)["project"]["name"])
    return names


@pytest.mark.parametrize("block", _params(_of("sh", "dev") + _of("console", "dev")))
def test_dev_block_names_real_scripts_commands_and_paths(block: Block) -> None:
    scripts, distributions = _hatch_scripts(), _distributions()
    env_bin = Path(sys.executable).parent
    for line in _commands(block):
        words = shlex.split(line, comments=True)
        for index, word in enumerate(words[:-1]):
            if word == "run" and index > 0 and words[index - 1] == "hatch":
                name = words[index + 1]
                assert name in scripts or (env_bin / name).exists(), f"{block.id}: {line}"
            if word == "--find-links":
                assert words[index + 1] == "dist", line
                assert "dist" in scripts, line
                assert words[index + 2].split("[")[0] in distributions, line
        for word in words:
            if "/" in word and re.fullmatch(r"\.?/?[\w./-]+\.(py|toml|md)|\./packages/\w+", word):
                assert (REPO_ROOT / word).exists(), f"{block.id}: {word} does not exist"


# -- shell blocks: run ---------------------------------------------------------------------

_PRELUDE = r"""
set -euo pipefail
_APIS=()
_wait_http() {
  for _ in $(seq 600); do
    curl -sf "http://$1/health" > /dev/null && return 0
    sleep 0.05
  done
  echo "no HTTP API at $1" >&2; return 1
}
_wait_port() {
  for _ in $(seq 600); do
    (exec 3<> "/dev/tcp/${1%:*}/${1##*:}") 2> /dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; return 1
}
_settle() {
  [ ${#_APIS[@]} -gt 0 ] || return 0
  for _ in $(seq 600); do
    distinct=$(for api in "${_APIS[@]}"; do
      curl -sf "http://$api/counter" | grep -o '"value": *-\?[0-9]*' || echo down
    done | sort -u | wc -l)
    [ "$distinct" -eq 1 ] && return 0
    sleep 0.05
  done
  echo "the nodes did not agree on a value" >&2; return 1
}
"""


def _commands(block: Block) -> list[str]:
    """The block's commands, one string each (continuations joined, prompts stripped)."""
    lines = block.text.replace("\\\n", " ").splitlines()
    if block.language == "console":
        return [line[2:] for line in lines if line.startswith("$ ")]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _flag(words: list[str], flag: str) -> str | None:
    for index, word in enumerate(words):
        if word == flag and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def _expected_json(line: str) -> object:
    """The JSON a ``# {...}`` comment says the command prints, or None."""
    _, sep, comment = line.partition("  # ")
    if not sep or not comment.startswith(("{", "[")):
        return None
    decoder = json.JSONDecoder()
    try:
        return decoder.raw_decode(comment)[0]
    except ValueError:
        return None


def _script(commands: list[str]) -> str:
    """The commands with the waits a person typing them would make, and output markers."""
    out = [_PRELUDE]
    for index, line in enumerate(commands):
        words = shlex.split(line, comments=True)
        if words and words[0] == "curl":
            out.append("_settle")
        out.append(f"printf '\\n@@@ {index}\\n'")  # API answers end without a newline
        out.append(line)
        if words and words[-1] == "&" and words[0] == "dcounter-node":
            http = _flag(words, "--http")
            assert http is not None, f"start nodes with an explicit --http: {line}"
            out += [f"_wait_http {http}", f"_APIS+=({http})"]
        elif words and words[-1] == "&" and words[:2] == ["dcounter-frames", "proxy"]:
            out.append(f"_wait_port {_flag(words, '--listen')}")
    out.append("printf '\\n@@@ end\\n'")
    return "\n".join(out) + "\n"


def _outputs(stdout: str, count: int) -> list[str]:
    parts = re.split(r"^@@@ (\d+|end)\n", stdout, flags=re.MULTILINE)
    outputs = [""] * count
    for marker, text in zip(parts[1::2], parts[2::2], strict=True):
        if marker != "end":
            outputs[int(marker)] = text
    return outputs


def _namespaced() -> list[str]:
    unshare = shutil.which("unshare")
    assert unshare is not None, "the README tests need unshare (util-linux)"
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return [unshare, *user, "--net", "--pid", "--fork", "--mount-proc"]


def _cluster_commands() -> list[str]:
    """The three nodes of "Running nodes yourself" (the README's own lines)."""
    readme = next(b for b in _of("sh", "") if b.readme == Path("README.md"))
    return [line for line in _commands(readme) if line.startswith("dcounter-node ")]


def _run_shell(block: Block, tmp_path: Path) -> None:
    commands = _commands(block)
    prefix = _cluster_commands() if block.tag == "cluster" else []
    script = tmp_path / "block.sh"
    script.write_text(_script(prefix + commands), encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DCOUNTER_CLUSTER_STATE_DIR", None)
    setup = "ip link set lo up && exec bash " + shlex.quote(str(script))
    done = subprocess.run(
        [*_namespaced(), "bash", "-c", setup],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.endswith("@@@ end\n"), done.stdout
    outputs = _outputs(done.stdout, len(prefix) + len(commands))[len(prefix) :]
    for line, output in zip(commands, outputs, strict=True):
        expected = _expected_json(line)
        if expected is not None:
            printed = [_json_or_none(text) for text in output.splitlines()]
            assert expected in printed, f"{block.id}: `{line}` printed {output!r}"


def _json_or_none(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


@pytest.mark.slow
@pytest.mark.parametrize("block", _params(_of("sh", "", "cluster") + _of("console", "", "cluster")))
def test_shell_block_runs(block: Block, tmp_path: Path) -> None:
    _run_shell(block, tmp_path)
