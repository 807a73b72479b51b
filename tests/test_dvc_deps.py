"""DVC deps derived, not remembered: each stage lists exactly the package modules its code imports.

A notebook stage's closure starts from the notebook's ``deeperfour`` imports and follows every module's
``deeperfour`` imports transitively (imports inside functions too: they run). Stage ``frames`` has no
notebook; its entry is the ``deeperfour frames`` command (``cli.py``, ``film/frames.py``,
``report/frames.py``). ``dvc.yaml`` must list that closure, no module more and none less, or
``dvc repro`` leaves stale results (a dep missing) or reruns for nothing (a dep too many).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "deeperfour"
ENTRIES = {"frames": ["deeperfour.cli", "deeperfour.film.frames", "deeperfour.report.frames"]}
CLI_ONLY = {"deeperfour.cli"}  # the frames command: follow only what _cmd_frames imports


def module_file(name: str) -> Path | None:
    """deeperfour.a.b -> deeperfour/a/b.py (or a package's __init__.py when it has code); None otherwise."""
    parts = name.split(".")
    path = ROOT.joinpath(*parts)
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    init = path / "__init__.py"
    if init.is_file() and init.read_text().strip():
        return init
    return None


def imported_modules(source: str, current: str = "") -> set[str]:
    """Names of the deeperfour modules a piece of code imports (``from pkg import submodule`` included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("deeperfour")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deeperfour"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if module_file(sub) or (ROOT / Path(*sub.split("."))).is_dir() else node.module)
    return {m for m in found if module_file(m)}


def cli_frames_imports() -> set[str]:
    """What ``deeperfour frames`` imports: cli.py's top level plus the body of ``_cmd_frames``."""
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    cmd = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_cmd_frames")
    return imported_modules(ast.unparse(ast.Module(body=[*top, cmd], type_ignores=[])))


def closure(start: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        more = cli_frames_imports() if m in CLI_ONLY else imported_modules(module_file(m).read_text(), m)
        todo += sorted(more - seen)
    return seen


def notebook_imports(path: Path) -> set[str]:
    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
    return imported_modules(code)


def stage_modules(stage: str, spec: dict) -> set[str]:
    """The package files (repo-relative) a stage's code runs."""
    notebooks = [d for d in spec["deps"] if str(d).startswith("notebooks/")]
    start = set(ENTRIES.get(stage, []))
    for nb in notebooks:
        start |= notebook_imports(ROOT / nb)
    return {str(module_file(m).relative_to(ROOT)) for m in closure(start)}


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", list(dvc_stages()))
def test_stage_deps_are_the_import_closure(stage):
    spec = dvc_stages()[stage]
    listed = {d for d in spec["deps"] if str(d).startswith("deeperfour/")}
    needed = stage_modules(stage, spec)
    missing, extra = sorted(needed - listed), sorted(listed - needed)
    assert not missing, f"dvc.yaml stage {stage} misses modules its code imports: {missing}"
    assert not extra, f"dvc.yaml stage {stage} lists modules its code never imports: {extra}"


def test_closure_follows_imports_inside_functions():
    code = "def f():\n    from deeperfour.film.video import probe\n"
    assert imported_modules(code) == {"deeperfour.film.video"}
    assert "deeperfour.core.config" in closure({"deeperfour.film.frames"})
