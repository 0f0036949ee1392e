"""The registry, the single source of model facts (as timm's): ``model_info("din").title``, ``build_model(...)``.

A model is a :class:`~recmodels.models.base.RecModel` subclass that sets its own ``name``. They come from:

- this package: every module in ``recmodels/models/`` is imported on first use and its models registered;
- installed plugins: the ``recmodels.models`` entry-point group, each entry naming a model class
  (``tiny = my_pkg.tiny:TinyAttention``); an entry is loaded once, when its name is first asked for or when
  all models are listed, and a plugin that fails to load costs one sentence (a warning when listing, an
  :class:`UnknownModelError` when it is the model asked for), never an error at ``import recmodels``;
- a module the user names: :func:`import_model_module` (``--model-module my_pkg.my_model`` or a ``.py`` file).

A checkpoint records where a plugin model came from (:attr:`ModelInfo.source`), but the module it names is never
imported from the checkpoint: that would run code named by a config file. :func:`source_hint` turns the record
into advice on what to install or pass.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import pkgutil
import re
import sys
import threading
import warnings
from dataclasses import dataclass, is_dataclass
from pathlib import Path

from recmodels.errors import InvalidArgumentError, UnknownModelError, quote
from recmodels.models.base import RecModel
from recmodels.models.losses import DEFAULT_LOSS

ENTRY_POINT_GROUP = "recmodels.models"
TASKS = ("implicit", "ctr")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,59}")

_lock = threading.RLock()  # Streamlit sessions may look models up from several threads at once
_builtin: dict | None = None  # name -> ModelInfo, from this package (discovered on first use)
_added: dict = {}  # name -> ModelInfo, from entry points, modules and register_model
_entry_points: dict | None = None  # name -> EntryPoint of the group (read on first use)
_failed: dict = {}  # entry-point name -> the sentence saying why it did not load


@dataclass(frozen=True)
class ModelInfo:
    """What the CLI, the results table, the app and the tests know about a model; all of it from the class."""

    name: str
    cls: type
    source: dict | None = None  # None for built-ins; {"entry_point", "distribution"} or {"module"} for plugins

    @property
    def title(self) -> str:
        return self.cls.title or self.name

    @property
    def order(self) -> int:
        return self.cls.order

    @property
    def task(self) -> str:
        return self.cls.task

    @property
    def config_class(self) -> type:
        return self.cls.config_class

    @property
    def default_training(self) -> dict:
        return dict(self.cls.default_training)

    @property
    def loss(self) -> str:
        """The training loss the model trains with unless told otherwise."""
        return self.cls.default_training.get("loss", DEFAULT_LOSS)

    @property
    def predicts_probability(self) -> bool:
        return self.cls.predicts_probability

    @property
    def needs_item_features(self) -> bool:
        return self.cls.needs_item_features

    @property
    def uses_images(self) -> bool:
        return self.cls.uses_images


# ---------------------------------------------------------------------------------------------- lookups
def registered_models() -> list[str]:
    """Every model's name in training order (``--model all``): built-ins, then plugins; loads every plugin."""
    with _lock:
        for name in list(_plugin_entry_points()):
            if name not in _added and name not in _failed:
                try:
                    _load_entry_point(_plugin_entry_points()[name])
                except UnknownModelError as err:
                    warnings.warn(str(err), RuntimeWarning, stacklevel=2)
        infos = [*_builtins().values(), *_added.values()]
    return [info.name for info in sorted(infos, key=lambda info: (info.order, info.name))]


def available_models() -> list[str]:
    return registered_models()


def model_info(name: str) -> ModelInfo:
    """The facts of one model; an installed plugin's entry point is loaded here the first time."""
    with _lock:
        found = _builtins().get(name) or _added.get(name)
        if found is not None:
            return found
        if name in _failed:
            raise UnknownModelError(_failed[name])
        entry = _plugin_entry_points().get(name) or _plugin_entry_points(rescan=True).get(name)
        if entry is not None:
            return _load_entry_point(entry)
        known = sorted({*_builtins(), *_added, *_plugin_entry_points()})
    raise UnknownModelError(
        f"Unknown model {quote(name)}; choose one of {', '.join(known)}, or install a "
        f"plugin that provides it or pass --model-module."
    )


def model_class(name: str) -> type:
    return model_info(name).cls


def build_model(name: str, spec: dict, config=None, **hparams) -> RecModel:
    """``model_class(name)(spec, config, **hparams)``; hyperparameters are checked against its config class."""
    return model_class(name)(spec, config, **hparams)


# ---------------------------------------------------------------------------------------------- registering
def register_model(cls, source: dict | None = None):
    """Add a model class (usable as a decorator); its facts are checked here, one sentence per problem."""
    info = ModelInfo(_checked(cls), cls, source)
    with _lock:
        taken = _builtins().get(info.name) or _added.get(info.name)
        if taken is not None and taken.cls is not cls:
            raise UnknownModelError(
                f"model name {quote(info.name)} of {_where(cls)} is already taken by "
                f"{_where(taken.cls)}; give one of them another `name`."
            )
        _added.setdefault(info.name, info)
        return cls


def models_defined_in(module) -> list[type]:
    """The models a module defines: RecModel subclasses declared there with their own ``name``."""
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, RecModel)
        and value.__module__ == module.__name__
        and value.__dict__.get("name")
    ]


def import_model_module(spec: str) -> list[str]:
    """Import a module (``my_pkg.my_model``) or a ``.py`` file the user names and register its models.

    Only call it with what a user passed explicitly (a CLI flag, an argument): never with a name read from a
    checkpoint. Returns the names of the models it defines.
    """
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise InvalidArgumentError(
            f"model_module must be a module name (my_pkg.my_model) or a .py file, got "
            f"{type(spec).__name__} {quote(spec)}."
        )
    spec = str(spec)
    if spec.endswith(".py") or "/" in spec or "\\" in spec:
        path = Path(spec).expanduser().resolve()
        module, source = _import_file(path), {"module": str(path)}
    else:
        module, source = _import_module(spec), {"module": spec}
    classes = models_defined_in(module)
    if not classes:
        raise UnknownModelError(f"{quote(spec)} defines no model: a model is a RecModel subclass that sets `name`.")
    return [register_model(cls, source).name for cls in classes]


def source_hint(source) -> str:
    """What to install or pass to open a checkpoint of a plugin model, from its config.json "model_source"."""
    if not isinstance(source, dict):
        return ""
    entry, module = source.get("entry_point"), source.get("module")
    if isinstance(entry, str):
        package = source.get("distribution")
        package = f"the package {quote(package, 200)}" if isinstance(package, str) else "the plugin package"
        return f"it was trained with the plugin entry point {quote(entry, 200)}: install {package} that provides it"
    if isinstance(module, str):
        return (
            f"it was trained with --model-module {quote(module, 200)}: pass the same --model-module (or "
            f"model_module= to RecService.from_checkpoint)"
        )
    return ""


# ---------------------------------------------------------------------------------------------- internals
def _builtins() -> dict:
    global _builtin
    with _lock:
        if _builtin is None:
            found = {}
            for module in pkgutil.iter_modules(sys.modules[__package__].__path__):
                for cls in models_defined_in(importlib.import_module(f"{__package__}.{module.name}")):
                    found[_checked(cls)] = ModelInfo(cls.name, cls)
            _builtin = found
        return _builtin


def _plugin_entry_points(rescan: bool = False) -> dict:
    global _entry_points
    if _entry_points is None or rescan:
        _entry_points = {entry.name: entry for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return _entry_points


def _load_entry_point(entry) -> ModelInfo:
    dist = getattr(getattr(entry, "dist", None), "name", None)
    where = f"the plugin entry point '{entry.name} = {entry.value}'" + (f" of {dist}" if dist else "")
    try:
        loaded = entry.load()
        classes = [loaded] if isinstance(loaded, type) else models_defined_in(loaded)
        if len(classes) != 1 or not issubclass(classes[0], RecModel):
            raise TypeError("it does not name one RecModel subclass")
        cls = classes[0]
        if cls.name != entry.name:
            raise TypeError(f"it names model {cls.name!r}; the entry point's name must be the model's `name`")
        register_model(cls, {"entry_point": f"{entry.name} = {entry.value}", "distribution": dist})
    except Exception as err:  # noqa: BLE001 - any error in a plugin's import becomes one sentence
        _failed[entry.name] = (
            f"Model {entry.name!r} could not be loaded from {where} "
            f"({type(err).__name__}: {_one_line(err)}); reinstall or fix that plugin."
        )
        raise UnknownModelError(_failed[entry.name]) from None
    return _added[entry.name]


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and name.startswith(err.name):
            raise UnknownModelError(
                f"No module named {quote(err.name)} (from --model-module {quote(name)}); "
                "check the name and that its folder is on PYTHONPATH."
            ) from None
        raise UnknownModelError(f"Importing {quote(name)} failed ({_one_line(err)}); install what it needs.") from None
    except Exception as err:  # noqa: BLE001 - the user's module: its error in one sentence
        raise UnknownModelError(
            f"Importing {quote(name)} failed ({type(err).__name__}: {_one_line(err)}); fix that module."
        ) from None


def _import_file(path: Path):
    if not path.is_file() or path.suffix != ".py":
        raise UnknownModelError(f"{quote(str(path), 200)} is not a .py file; pass a .py file or a module name.")
    name = re.sub(r"\W", "_", path.stem)
    present = sys.modules.get(name)
    if present is not None:
        if Path(getattr(present, "__file__", "") or "").resolve() == path:
            return present
        raise UnknownModelError(
            f"A module named {quote(name)} is already imported from elsewhere; rename {quote(str(path))}."
        )
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, path))
    sys.modules[name] = module  # dataclasses and typing look the module up by name
    try:
        module.__spec__.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - the user's file: its error in one sentence
        del sys.modules[name]
        raise UnknownModelError(
            f"Importing {quote(str(path))} failed ({type(err).__name__}: {_one_line(err)}); fix that file."
        ) from None
    return module


def _checked(cls) -> str:
    """The class's name after checking what it declares (see RecModel)."""
    if not (isinstance(cls, type) and issubclass(cls, RecModel)):
        raise UnknownModelError(f"{quote(cls)} is not a RecModel subclass, so it cannot be registered as a model.")
    name = cls.__dict__.get("name")
    problem = None
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problem = "its `name` must be up to 60 letters, digits, '_' or '-'"
    elif cls.task not in TASKS:
        problem = f"its `task` must be one of {', '.join(TASKS)}"
    elif not (isinstance(cls.config_class, type) and is_dataclass(cls.config_class)):
        problem = "its `config_class` must be a dataclass"
    elif not isinstance(cls.default_training, dict) or not isinstance(cls.title, str):
        problem = "its `default_training` must be a dict and its `title` text"
    if problem:
        raise UnknownModelError(f"Model class {_where(cls)} cannot be registered: {problem}.")
    return name


def _where(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
