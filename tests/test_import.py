"""Import hygiene, all in one place.

* The test oracles (diffusers) are installed: a missing oracle is a failure, never a skip.
* Importing ``wan`` is cheap and side-effect free: no torch, no CUDA initialisation, no gradio or
  diffusers, no network; ``prompting`` never imports torch. Each entry point is checked in its own
  fresh interpreter (one subprocess per entry point), and a failure names the entry point.
* Static checks over the source: ``wan`` never imports diffusers/gradio/spaces, its modules form no
  import cycle, and only ``wan.testing`` itself imports ``wan.testing``.
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WAN = REPO / "wan"

# ----------------------------------------------------------------------------- test oracles

# The independent references the numerical tests compare against (requirements-dev.txt). They are
# imported at module level by the tests that use them, so a missing one is an import error there;
# this test says what to do about it.
ORACLES = ("diffusers",)


@pytest.mark.parametrize("name", ORACLES)
def test_oracle_is_installed(name: str) -> None:
    try:
        importlib.import_module(name)
    except ImportError as e:
        pytest.fail(
            f"the test oracle {name!r} is not importable ({e}); the model, VAE, scheduler and loading "
            "tests compare against it. Install the test dependencies: pip install -r requirements-dev.txt",
            pytrace=False,
        )


# ----------------------------------------------------------------------------- entry points, one interpreter each

# Runs before each entry point's code: any network access fails.
_PRELUDE = """
import socket, sys

def _no_network(*args, **kwargs):
    raise AssertionError("network access attempted")

socket.socket.connect = _no_network
socket.socket.connect_ex = _no_network
socket.create_connection = _no_network
socket.getaddrinfo = _no_network
"""

# Runs after each entry point's code (``FORBIDDEN`` and ``ENTRY`` are set by ``_script``).
_POSTLUDE = """
_loaded = sorted({m.split(".")[0] for m in sys.modules} & FORBIDDEN)
assert not _loaded, f"{ENTRY} imported {_loaded}"
if "torch" in sys.modules:
    import torch
    assert not torch.cuda.is_initialized(), f"{ENTRY} initialised CUDA"
print("OK", ENTRY)
"""

HEAVY = ("torch", "numpy", "diffusers", "gradio", "spaces", "transformers", "huggingface_hub", "safetensors")
UI_AND_ORACLES = ("diffusers", "gradio", "spaces")


@dataclass(frozen=True)
class EntryPoint:
    id: str
    code: str
    forbidden: tuple[str, ...]  # top-level packages that must not be imported afterwards
    minimal_env: bool = False  # run with only PATH and OMP_NUM_THREADS set


ENTRY_POINTS = [
    EntryPoint(
        "import wan",
        """
        import wan
        assert {"get_spec", "TASKS", "ModelSpec", "load_pipeline", "GenerationCancelled", "GenerationError",
                "CheckpointError"} <= set(wan.__all__) <= set(dir(wan))
        assert wan.CheckpointError.__module__ == "wan.errors"
        """,
        HEAVY,
    ),
    EntryPoint("import wan.configs", "import wan.configs", HEAVY),
    EntryPoint("import wan.errors", "import wan.errors", HEAVY),
    EntryPoint("import wan.loading", "import wan.loading", HEAVY),
    EntryPoint("import wan.testing.synthetic", "import wan.testing.synthetic", HEAVY),
    EntryPoint("import wan.testing.tokenizer", "import wan.testing.tokenizer", UI_AND_ORACLES),
    EntryPoint("import wan.schedulers", "import wan.schedulers", UI_AND_ORACLES),
    EntryPoint("import wan.modules.t5", "import wan.modules.t5", UI_AND_ORACLES),
    EntryPoint("import wan.modules.vae21, vae22", "import wan.modules.vae21, wan.modules.vae22", UI_AND_ORACLES),
    EntryPoint(
        "import every wan module",
        """
        import importlib, pkgutil
        import wan
        for info in pkgutil.walk_packages(wan.__path__, "wan."):
            importlib.import_module(info.name)
        """,
        UI_AND_ORACLES,
    ),
    EntryPoint(
        "wan public names",
        """
        import wan
        spec = wan.get_spec("t2v-A14B")
        assert spec.task in wan.TASKS and isinstance(spec, wan.ModelSpec)
        assert issubclass(wan.CheckpointError, RuntimeError)
        from wan.modules.t5 import T5CheckpointError
        assert issubclass(T5CheckpointError, wan.CheckpointError)
        try:
            wan.no_such_name
        except AttributeError as e:
            assert "no_such_name" in str(e)
        else:
            raise AssertionError("wan.no_such_name did not raise")
        """,
        UI_AND_ORACLES,
    ),
    EntryPoint(
        "wan lazy pipeline names",
        """
        import wan
        assert callable(wan.load_pipeline)
        assert issubclass(wan.GenerationCancelled, BaseException) and issubclass(wan.GenerationError, Exception)
        """,
        UI_AND_ORACLES,
    ),
    EntryPoint(
        "wan tiny checkpoint round trip",
        """
        import tempfile
        import torch
        from wan import loading
        from wan.testing import synthetic
        root = synthetic.write_tiny_checkpoint("ti2v-5B", tempfile.mkdtemp() + "/ckpt")
        comps = loading.load_components("ti2v-5B", root, dtype=torch.float32)
        comps.text_encoder.encode(["hello"])
        """,
        UI_AND_ORACLES,
    ),
    EntryPoint(
        "import prompting (every module)",
        """
        import importlib, pkgutil
        import prompting
        for info in pkgutil.iter_modules(prompting.__path__):
            importlib.import_module("prompting." + info.name)
        """,
        ("torch", "gradio", "transformers", "diffusers"),
    ),
    EntryPoint(
        "prompting in use",
        """
        import prompting
        f = prompting.PromptFields(subject="a cat", aesthetics={"shot_size": "medium_shot"})
        prompting.build_prompt(f, mode="advanced", lang="zh")
        prompting.parse_prompt("Medium shot. A cat.")
        prompting.negative_prompt("en"); prompting.example_prompts("ti2v-5B")
        prompting.make_extender("offline").extend("a cat", lang="en")
        prompting.make_extender("local", model="/nonexistent/model")
        prompting.make_extender("openai", base_url="http://127.0.0.1:9/v1", model="m")
        """,
        ("torch", "gradio", "transformers", "numpy", "diffusers"),
        minimal_env=True,
    ),
]


def _script(entry: EntryPoint) -> str:
    return "\n".join(
        [
            textwrap.dedent(_PRELUDE),
            f"ENTRY = {entry.id!r}",
            f"FORBIDDEN = {set(entry.forbidden)!r}",
            textwrap.dedent(entry.code),
            textwrap.dedent(_POSTLUDE),
        ]
    )


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=[e.id for e in ENTRY_POINTS])
def test_entry_point_imports_nothing_heavy(entry: EntryPoint) -> None:
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"} if entry.minimal_env else None
    result = subprocess.run(
        [sys.executable, "-c", _script(entry)], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )
    if result.returncode != 0 or f"OK {entry.id}" not in result.stdout:
        pytest.fail(
            f"{entry.id}: failed (must not import {', '.join(entry.forbidden)}; CUDA must stay uninitialised; "
            f"no network)\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}",
            pytrace=False,
        )


# ----------------------------------------------------------------------------- static checks over wan/


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _wan_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(WAN.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST, *, type_checking: bool) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, module-level or inside functions; ``if TYPE_CHECKING:`` bodies only
    with ``type_checking=True``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test) and not type_checking:
            children: list[ast.AST] = [node.test, *node.orelse]
        else:
            children = list(ast.iter_child_nodes(node))
        for child in children:
            visit(child)

    visit(tree)
    return found


def _imported_modules(path: Path) -> set[str]:
    """Top-level names of the absolute imports in ``path`` (TYPE_CHECKING ones included)."""
    names: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8")), type_checking=True):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _absolute_imports(name: str, path: Path, *, type_checking: bool) -> set[str]:
    """The dotted names module ``name`` (file ``path``) imports, relative imports resolved:
    ``from a.b import c`` gives ``a.b`` and ``a.b.c`` (``c`` may be a submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8")), type_checking=type_checking):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        if node.level:
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _wan_imports(name: str, path: Path, modules: dict[str, Path], *, type_checking: bool) -> set[str]:
    """The wan modules that module ``name`` imports: each imported name mapped to the closest
    enclosing module (``from pkg import sub`` imports ``pkg.sub`` when that is a module)."""
    targets: set[str] = set()
    for dotted in _absolute_imports(name, path, type_checking=type_checking):
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        if dotted == "wan" or dotted.startswith("wan."):
            targets.add(dotted)
    targets.discard(name)
    return targets


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return found


def test_wan_never_imports_diffusers_or_gradio() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(_imported_modules(path) & {"diffusers", "gradio", "spaces"})
        for path in sorted(WAN.rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_wan_has_no_import_cycles() -> None:
    """Module-level and function-level imports both count (a function-level import only hides a
    cycle until first call); ``if TYPE_CHECKING:`` imports do not."""
    modules = _wan_modules()
    graph = {name: _wan_imports(name, path, modules, type_checking=False) for name, path in modules.items()}
    cycles = _cycles(graph)
    detail = "\n".join(
        " <-> ".join(c) + "\n" + "\n".join(f"    {m} imports {sorted(graph[m] & set(c))}" for m in c) for c in cycles
    )
    assert not cycles, f"import cycles between wan modules:\n{detail}"


def test_only_wan_testing_imports_wan_testing() -> None:
    """wan.testing (tiny checkpoints, the synthetic tokenizer) is for tests and benchmarks; the
    library proper never imports it, not even inside a function or under TYPE_CHECKING."""
    offenders = {
        name: sorted(t for t in _absolute_imports(name, path, type_checking=True)
                     if t == "wan.testing" or t.startswith("wan.testing."))
        for name, path in _wan_modules().items()
        if name != "wan.testing" and not name.startswith("wan.testing.")
    }  # fmt: skip
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"library modules importing the test helpers (wan.testing): {offenders}"
