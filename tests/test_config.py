"""One home for each number: SiamFC's crop sizes, context and head scale are defined once in
``siamtrack.config``; every default of the same name in the package must agree with it."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import siamtrack
from siamtrack.config import CONTEXT, EXEMPLAR_SZ, INSTANCE_SZ, OUT_SCALE, ModelConfig, TrackerConfig

NUMBERS = {"exemplar_sz": EXEMPLAR_SZ, "instance_sz": INSTANCE_SZ, "context": CONTEXT, "out_scale": OUT_SCALE}


def _functions():
    for info in pkgutil.walk_packages(siamtrack.__path__, "siamtrack."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module):
            if inspect.isclass(obj) and obj.__module__ == module.__name__:
                yield from ((f"{info.name}.{obj.__name__}.{n}", f) for n, f in vars(obj).items()
                            if inspect.isfunction(f))
            elif inspect.isfunction(obj) and obj.__module__ == module.__name__:
                yield f"{info.name}.{obj.__name__}", obj


def test_config_defaults_are_the_constants():
    cfg = TrackerConfig()
    assert (cfg.exemplar_sz, cfg.instance_sz, cfg.context) == (EXEMPLAR_SZ, INSTANCE_SZ, CONTEXT)
    assert ModelConfig().out_scale == OUT_SCALE


def test_every_default_of_these_names_agrees_with_config():
    checked, wrong = 0, []
    for where, fn in _functions():
        for name, param in inspect.signature(fn).parameters.items():
            if name in NUMBERS and param.default is not inspect.Parameter.empty:
                checked += 1
                if param.default != NUMBERS[name]:
                    wrong.append(f"{where}({name}={param.default!r})")
    assert checked >= 10  # the walk really found the crop/transform/model functions
    assert not wrong, f"defaults that disagree with siamtrack.config: {wrong}"
