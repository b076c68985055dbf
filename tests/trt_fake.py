"""A fake `tensorrt` module whose members are generated from the TensorRT type stubs.

Nothing is written by hand: every class, enum member, method, property and attribute comes from
parsing `tests/data/tensorrt-stubs-10.13/tensorrt_bindings/tensorrt.pyi` (the TensorRT 10.13
Python API). So a name TensorRT does not have raises AttributeError, an argument list the real
method would refuse raises TypeError (arguments are bound against the stub's signature), and
setting an attribute the class does not declare raises AttributeError, as pybind11 does.

Objects record what was done to them (`obj._calls`, `obj._values`); what a method or property
returns is the stub's return type (a fake object, or 0/""/False/[]), unless a test sets it in
`behaviour`: {"Class.member": value or callable(self, *args)}. `fake_tensorrt(version,
removed=...)` drops names (e.g. what TensorRT 11 removed) to stand in for other releases.
"""

from __future__ import annotations

import ast
import inspect
import re
import types
from functools import cache
from pathlib import Path
from typing import Any

STUBS = Path(__file__).parent / "data" / "tensorrt-stubs-10.13"
BINDINGS = STUBS / "tensorrt_bindings" / "tensorrt.pyi"
_VALUE = re.compile(r"# value = <[\w.]+: (-?\d+)>")


class _Spec:
    def __init__(self, name: str) -> None:
        self.name = name
        self.bases: list[str] = []
        self.methods: dict[str, list[inspect.Signature]] = {}
        self.returns: dict[str, str] = {}
        self.properties: dict[str, str] = {}  # name -> return annotation
        self.setters: set[str] = set()
        self.attributes: dict[str, str] = {}  # annotated, settable
        self.classvars: dict[str, tuple[str, int | None]] = {}  # name -> (annotation, enum value)
        self.nested: dict[str, _Spec] = {}
        self.is_enum = False


def _signature(fn: ast.FunctionDef) -> inspect.Signature:
    params = []
    a = fn.args
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for i, (arg, default) in enumerate(zip(positional, defaults)):
        kind = inspect.Parameter.POSITIONAL_ONLY if i < len(a.posonlyargs) else inspect.Parameter.POSITIONAL_OR_KEYWORD
        params.append(inspect.Parameter(arg.arg, kind, default=inspect.Parameter.empty if default is None else None))
    if a.vararg:
        params.append(inspect.Parameter(a.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        params.append(inspect.Parameter(arg.arg, inspect.Parameter.KEYWORD_ONLY, default=inspect.Parameter.empty if default is None else None))
    if a.kwarg:
        params.append(inspect.Parameter(a.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


def _parse_class(node: ast.ClassDef, lines: list[str]) -> _Spec:
    spec = _Spec(node.name)
    spec.bases = [ast.unparse(b).split(".")[-1] for b in node.bases]
    for item in node.body:
        if isinstance(item, ast.ClassDef):
            spec.nested[item.name] = _parse_class(item, lines)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            ann = ast.unparse(item.annotation)
            name = item.target.id
            if name == "__members__":
                spec.is_enum = True
            elif "ClassVar" in ann:
                m = _VALUE.search(lines[item.lineno - 1])
                spec.classvars[name] = (ann, int(m.group(1)) if m else None)
            else:
                spec.attributes[name] = ann
        elif isinstance(item, ast.FunctionDef):
            decorators = [ast.unparse(d) for d in item.decorator_list]
            ret = ast.unparse(item.returns) if item.returns else "None"
            if "property" in decorators:
                spec.properties[item.name] = ret
            elif any(d.endswith(".setter") for d in decorators):
                spec.setters.add(item.name)
            else:  # pybind11 declares __enter__/__exit__ as static methods taking `this`: the same call shape
                sig = _signature(item)
                spec.methods.setdefault(item.name, []).append(sig)
                spec.returns.setdefault(item.name, ret)
    return spec


@cache
def stub_specs() -> dict[str, _Spec]:
    """Every class of the stubs by name (nested ones as 'Outer.Inner' too)."""
    text = BINDINGS.read_text(encoding="utf-8")
    lines = text.splitlines()
    specs: dict[str, _Spec] = {}

    def add(spec: _Spec, prefix: str = "") -> None:
        specs[prefix + spec.name] = spec
        for inner in spec.nested.values():
            add(inner, prefix + spec.name + ".")

    for node in ast.parse(text).body:
        if isinstance(node, ast.ClassDef):
            add(_parse_class(node, lines))
    return specs


@cache
def stub_functions() -> dict[str, list[inspect.Signature]]:
    """Module-level functions of the stubs."""
    out: dict[str, list[inspect.Signature]] = {}
    for node in ast.parse(BINDINGS.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef):
            out.setdefault(node.name, []).append(_signature(node))
    return out


def all_names() -> set[str]:
    """'Class', 'Class.member' and 'function' names of the TensorRT 10.13 Python API."""
    names = set(stub_functions())
    for cname, spec in stub_specs().items():
        names.add(cname)
        names.update(f"{cname}.{m}" for m in (*spec.methods, *spec.properties, *spec.attributes, *spec.classvars, *spec.nested))
    return names


def _members(specs: dict[str, _Spec], spec: _Spec) -> _Spec:
    """`spec` with the members of its stub base classes merged in."""
    merged = _Spec(spec.name)
    for base in spec.bases:
        if base in specs:
            b = _members(specs, specs[base])
            for k in ("methods", "returns", "properties", "attributes", "classvars"):
                getattr(merged, k).update(getattr(b, k))
            merged.setters |= b.setters
    for k in ("methods", "returns", "properties", "attributes", "classvars", "nested"):
        getattr(merged, k).update(getattr(spec, k))
    merged.setters |= spec.setters
    merged.is_enum = spec.is_enum
    merged.bases = spec.bases
    return merged


def fake_tensorrt(version: str = "10.13.0.35", removed: frozenset[str] | set[str] = frozenset(),  # noqa: C901 - generates a tensorrt module from the stubs: one branch per stub construct
                  behaviour: dict[str, Any] | None = None) -> types.ModuleType:
    """A `tensorrt` module generated from the stubs, without the names in `removed`."""
    specs = stub_specs()
    behaviour = behaviour if behaviour is not None else {}
    module = types.ModuleType("tensorrt")
    module.__version__ = version  # type: ignore[attr-defined]
    module.__file__ = str(BINDINGS)
    module._behaviour = behaviour  # type: ignore[attr-defined]
    classes: dict[str, type] = {}

    def default_for(annotation: str, owner: Any = None) -> Any:
        ann = annotation.replace("typing.", "").strip()
        if ann.startswith(("Optional[", "typing_extensions")):
            return None
        if ann in ("bool",):
            return False
        if ann in ("int", "float"):
            return 0
        if ann == "str":
            return ""
        if ann.startswith(("list", "tuple", "List", "Tuple")):
            return []
        if ann.startswith(("dict", "Dict")):
            return {}
        target = ann.split("[")[0]
        cls = classes.get(target) or classes.get(target.split(".")[-1])
        if cls is not None and not getattr(cls, "_is_enum", False):
            return cls.__new__(cls)._init()
        if cls is not None:
            members = list(getattr(cls, "__members__", {}).values())
            return members[0] if members else None
        return None

    def make_enum(qual: str, spec: _Spec) -> type:
        def __init__(self, name: str, value: int) -> None:
            object.__setattr__(self, "name", name)
            object.__setattr__(self, "value", value)

        ns = {"__init__": __init__, "_is_enum": True, "__int__": lambda self: self.value, "__index__": lambda self: self.value,
              "__hash__": lambda self: hash((qual, self.value)), "__repr__": lambda self: f"<{qual}.{self.name}: {self.value}>",
              "__eq__": lambda self, other: isinstance(other, type(self)) and other.value == self.value,
              "__lt__": lambda self, other: self.value < int(other)}
        cls = type(spec.name, (), ns)
        cls.__qualname__ = qual
        members = {}
        for i, (name, (_, value)) in enumerate(spec.classvars.items()):
            if f"{qual}.{name}" in removed:
                continue
            members[name] = cls(name, value if value is not None else i)
            setattr(cls, name, members[name])
        cls.__members__ = members  # type: ignore[attr-defined]
        return cls

    def make_class(qual: str, raw: _Spec) -> type:  # noqa: C901 - generates a class from the stubs: one branch per stub construct
        spec = _members(specs, raw)
        prefix = qual

        def _init(self):
            object.__setattr__(self, "_calls", [])
            object.__setattr__(self, "_values", {})
            return self

        def __init__(self, *args, **kwargs):
            _init(self)
            sigs = spec.methods.get("__init__")
            if sigs:
                _bind(prefix, "__init__", sigs, (self, *args), kwargs)
            self._calls.append(("__init__", args, kwargs))

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            key = f"{prefix}.{name}"
            if key in removed or name not in spec.methods and name not in spec.properties and name not in spec.attributes:
                raise AttributeError(f"'tensorrt.{prefix}' object has no attribute '{name}'")
            if name in spec.methods:
                def method(*args, **kwargs):
                    _bind(prefix, name, spec.methods[name], (self, *args), kwargs)
                    self._calls.append((name, args, kwargs))
                    how = behaviour.get(key)
                    if callable(how):
                        return how(self, *args, **kwargs)
                    return how if key in behaviour else default_for(spec.returns.get(name, "None"))
                return method
            if name in self._values:
                return self._values[name]
            how = behaviour.get(key)
            if callable(how):
                return how(self)
            if key in behaviour:
                return how
            value = default_for(spec.properties.get(name) or spec.attributes.get(name, "None"))
            self._values[name] = value
            return value

        def __setattr__(self, name, value):
            settable = name in spec.attributes or name in spec.setters
            if f"{prefix}.{name}" in removed or not settable:
                raise AttributeError(f"can't set attribute '{name}' of 'tensorrt.{prefix}' (not settable in the TensorRT {version} API)")
            self._values[name] = value
            self._calls.append(("=" + name, (value,), {}))

        ns: dict[str, Any] = {"__init__": __init__, "_init": _init, "__getattr__": __getattr__, "__setattr__": __setattr__, "_is_enum": False}
        for dunder in ("__iter__", "__len__", "__getitem__", "__bool__", "__enter__", "__exit__", "__buffer__"):
            if dunder in spec.methods:
                def special(self, *args, _d=dunder):
                    how = behaviour.get(f"{prefix}.{_d}")
                    if callable(how):
                        return how(self, *args)
                    if _d == "__getitem__":
                        raise IndexError(args[0])  # an empty sequence unless a test says otherwise
                    return {"__iter__": iter(()), "__len__": 0, "__bool__": True, "__enter__": self}.get(_d)
                ns[dunder] = special
        cls = type(raw.name, (), ns)
        cls.__qualname__ = qual
        return cls

    # enums first (so class attributes can refer to them), nested before their owners
    for qual, spec in specs.items():
        if spec.is_enum and qual not in removed:
            classes[qual] = make_enum(qual, spec)
    for qual, spec in specs.items():
        if not spec.is_enum and qual not in removed:
            classes[qual] = make_class(qual, spec)
    for qual, cls in classes.items():
        if "." in qual:
            outer, inner = qual.rsplit(".", 1)
            if outer in classes:
                setattr(classes[outer], inner, cls)
        else:
            setattr(module, qual, cls)
    # class-level constants that are enum members of other classes (Logger.WARNING is a Severity)
    for qual, spec in specs.items():
        if spec.is_enum or qual not in classes:
            continue
        for name, (ann, _) in spec.classvars.items():
            if f"{qual}.{name}" in removed:
                continue
            target = ann.replace("typing.ClassVar[", "").rstrip("]")
            enum = classes.get(target) or classes.get(target.split(".")[-1])
            if enum is not None and name in getattr(enum, "__members__", {}):
                setattr(classes[qual], name, enum.__members__[name])
    for name, sigs in stub_functions().items():
        if name in removed:
            continue

        def function(*args, _name=name, _sigs=sigs, **kwargs):
            _bind("tensorrt", _name, _sigs, args, kwargs)
            how = behaviour.get(_name)
            return how(*args, **kwargs) if callable(how) else how

        setattr(module, name, function)
    return module


def _bind(owner: str, name: str, sigs: list[inspect.Signature], args: tuple, kwargs: dict) -> None:
    errors = []
    for sig in sigs:
        try:
            sig.bind(*args, **kwargs)
            return
        except TypeError as e:
            errors.append(str(e))
    raise TypeError(f"tensorrt {owner}.{name}{sigs[0]}: {errors[0]}")


def forget_polygraphy_tensorrt() -> None:
    """Make Polygraphy import `tensorrt` again on next use (its lazy modules cache the first import)."""
    import sys

    for name, mod in list(sys.modules.items()):
        if not name.startswith("polygraphy") or mod is None:
            continue
        for value in list(vars(mod).values()):
            if type(value).__name__ == "LazyModule" and "module" in vars(value):
                object.__setattr__(value, "module", None)
