"""The README's layout tree lists exactly the package's folders and modules."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_tree() -> set[str]:
    """deeperfour/... paths named in the README's Layout block (folders end with /)."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Layout"):]
    block = block[block.index("```") + 3:]
    block = block[: block.index("```")]
    names, folder = set(), None
    for line in block.splitlines():
        m = re.match(r"^( {2}| {4})(\S+)", line)  # a folder at indent 2, a module at 4; wrapped text deeper
        if not m:
            continue
        indent, name = len(m.group(1)), m.group(2)
        if indent == 2:
            folder = name if name.endswith("/") else None
            names.add(f"deeperfour/{name}")
            if name.endswith("/"):  # "losses/  colorize.py (...), cartoon.py (...)": modules inline
                names |= {f"deeperfour/{name}{f}" for f in re.findall(r"(\w+\.py)", line.split(maxsplit=1)[1]
                                                                       if len(line.split()) > 1 else "")}
        elif indent == 4 and folder:
            names.add(f"deeperfour/{folder}{name}")
    return names


def package_tree() -> set[str]:
    pkg = ROOT / "deeperfour"
    out = set()
    for p in pkg.rglob("*.py"):
        if p.name == "__init__.py" or "__pycache__" in p.parts:
            continue
        rel = p.relative_to(pkg)
        if rel.name == "__main__.py":
            continue
        out.add(f"deeperfour/{rel.as_posix()}")
    out |= {f"deeperfour/{d.name}/" for d in pkg.iterdir() if d.is_dir() and (d / "__init__.py").is_file()}
    return out


def test_readme_layout_matches_the_package():
    listed, actual = readme_tree(), package_tree()
    assert listed == actual, f"README lists but package lacks: {sorted(listed - actual)}; " \
                             f"package has but README lacks: {sorted(actual - listed)}"
