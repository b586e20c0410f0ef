"""The architecture as the tree shows it: codec/ knows nothing of acnzip, and the modules of
acnzip import each other without a cycle (counting imports inside functions too, so none can
dodge one)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path, package: str) -> set[str]:
    """Modules of `package` that the file imports anywhere (top level or in a function)."""
    tree = ast.parse(path.read_text())
    here = path.relative_to(ROOT).with_suffix("").parts
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:                                   # relative: resolve against here
                base = list(here[:len(here) - node.level])
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [f"{mod}.{a.name}" for a in node.names] + [mod]
            else:
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out |= {n for n in names if n.split(".")[0] == package}
    return out


def _modules(package: str) -> dict[str, Path]:
    mods = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def test_codec_imports_nothing_from_acnzip():
    for name, path in _modules("codec").items():
        assert not _imports(path, "acnzip"), name


def test_acnzip_modules_import_each_other_without_a_cycle():
    mods = _modules("acnzip")
    graph = {m: {i for i in _imports(p, "acnzip") if i in mods and i != m
                 and not m.startswith(i + ".")}          # a package's own __init__ is fine
             for m, p in mods.items()}
    state: dict[str, int] = {}

    def visit(m, path):
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path + [m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for n in sorted(graph[m]):
            visit(n, path + [m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])


def test_the_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("## codec/ in one example")]
    for package in ("codec", "acnzip"):
        for path in (ROOT / package).glob("*.py"):
            if path.name not in ("__init__.py", "__main__.py"):
                assert path.name in layout, f"README layout misses {package}/{path.name}"
