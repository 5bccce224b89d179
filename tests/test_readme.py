"""The README's fresh-machine commands stay true: CI runs (b) verbatim, (a) runs the main job."""
import re

from tests.conftest import REPO


def _readme_commands():
    return re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    setup_and_demo, setup_and_test = _readme_commands()[:2]
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert setup_and_test in ci_lines
    assert "pytest" in setup_and_test and "constraints.txt" in setup_and_test
    assert "lumen3d demo" in setup_and_demo and "constraints.txt" in setup_and_demo


def test_every_pip_call_in_the_readme_uses_the_constraints_file():
    for block in _readme_commands():
        for call in re.findall(r"pip install[^&\n]*", block):
            if "--index-url" not in call:  # the CUDA-build step installs torch itself, pinned
                assert "-c constraints.txt" in call, call
    assert (REPO / "constraints.txt").read_text().count("torch==2.13.0") == 1
