"""The About page's module table is the library's: every module is in it, and each imports only
modules below it in the table (the claim the page makes about them)."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
LIBRARY = ROOT / "gcscoop_lib"


def modules() -> dict[str, Path]:
    found = {p.stem: p for p in LIBRARY.glob("*.py") if p.stem not in ("__init__", "__main__")}
    return {**found, **{package: LIBRARY / package for package in ("paper_data", "widgets")}}


def imports(name: str, path: Path) -> set[str]:
    """The library's modules that a module imports, at its top or inside a function."""
    known, found = set(modules()), set()
    for file in [path] if path.is_file() else sorted(path.glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                top = (node.module or "").split(".")[0]
                found |= {top} if top else {alias.name for alias in node.names}
    return (found & known) - {name}


ABOUT = ROOT / "book" / "10_about.md"


def test_imports_go_downwards_in_the_about_pages_module_table():
    table = ABOUT.read_text().split("| module | job |")[1].split("\n\n")[0]
    order = re.findall(r"^\| `(\w+)` \|", table, re.M)
    assert sorted(order) == sorted(modules()), "the About page's module table and the library's modules differ"
    upward = [f"{name} imports {other}" for name, path in modules().items() for other in imports(name, path)
              if order.index(other) < order.index(name)]
    assert not upward, f"{upward}: move the module in the About page's table ({ABOUT.name}), or the import"
