"""README's Quickstart: two one-line commands, each in its own virtual environment (so either
runs alone, in any order), both ignored by git, and .ci/run running the test command's
install and pytest exactly as README writes them."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_two_commands_build_separate_ignored_environments():
    commands = quickstart_commands()
    assert len(commands) == 2 and not any(c.rstrip().endswith("\\") for c in commands)   # one line each
    venvs = [re.match(r"python3 -m venv (\S+) && \. (\S+)/bin/activate && ", c).groups() for c in commands]
    assert all(made == activated for made, activated in venvs)
    names = [made for made, _ in venvs]
    assert len(set(names)) == 2, names
    ignored = (ROOT / ".gitignore").read_text().split()
    assert all(f"{name}/" in ignored for name in names), names


def test_ci_runs_readmes_test_command():
    install, tests = quickstart_commands()[1].split(" && ")[2:]
    assert tests == "HYPOTHESIS_PROFILE=ci python -m pytest -q"
    ci = (ROOT / ".ci" / "run").read_text()
    run = next(line for line in ci.splitlines() if line.endswith(" && " + tests))
    assert run.replace(" --quiet", "") == f"{install} && {tests}"
