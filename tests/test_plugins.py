"""Reconstruction plugins: built-ins and an external package, found through entry points.

The external package is ``tests/external_plugin`` (the worked example of
docs/plugins.rst). It is pip-installed into a temporary folder, never into the
environment, and that folder is put on ``sys.path`` for this module only.
"""

import importlib
import importlib.metadata
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import hyperspy_edxtomo as het
from hyperspy_edxtomo.plugins import hookspecs
from hyperspy_edxtomo.plugins import manager as plugin_manager
from hyperspy_edxtomo.plugins.contract import ReconstructionAlgorithm
from hyperspy_edxtomo.plugins.manager import get_plugin_manager
from hyperspy_edxtomo.signals import ElementVolume

EXTERNAL_SOURCE = Path(__file__).resolve().parent / "external_plugin"
EXTERNAL_MODULE = "edxtomo_example_plugin"
EXTERNAL_METHOD = "example_backprojection"
BUILTINS = {"fbp", "l1", "sirt", "tv"}


@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory):
    """Install tests/external_plugin into a temporary target and make it importable."""
    root = tmp_path_factory.mktemp("example_plugin")
    # build from a copy: setuptools builds in-tree and would leave build/ and
    # *.egg-info in tests/external_plugin
    source = root / "source"
    shutil.copytree(EXTERNAL_SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    cmd = [
        sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
        "--no-cache-dir", "--disable-pip-version-check", "--quiet", "--target", str(target), str(source),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"pip install of the example plugin failed:\n{done.stdout}\n{done.stderr}"
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    get_plugin_manager.cache_clear()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop(EXTERNAL_MODULE, None)
        importlib.invalidate_caches()
        get_plugin_manager.cache_clear()


@pytest.fixture(scope="module")
def maps():
    return het.datasets.quantum_dot_element_maps(size=24, seed=0)


def _hookimpl_names(pm, module):
    return [name for name in dir(module) if pm.parse_hookimpl_opts(module, name) is not None]


# -- built-in plugins ----------------------------------------------------------------


def test_builtin_plugins_are_registered_explicitly_beside_the_entry_points():
    pm = get_plugin_manager()
    listing = het.list_algorithms()
    # none of the built-ins comes through the entry-point group other packages use
    eps = {ep.value for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT)}
    assert not any(v.startswith("hyperspy_edxtomo.") for v in eps)
    for name in sorted(BUILTINS):
        module_name = f"hyperspy_edxtomo.reconstruction.algorithms.{name}"
        assert module_name in plugin_manager.BUILTIN_PLUGINS
        module = importlib.import_module(module_name)
        assert pm.get_plugin(module_name) is module
        assert _hookimpl_names(pm, module) == ["edxtomo_reconstruction_algorithms"]
        (cls,) = module.edxtomo_reconstruction_algorithms()
        assert issubclass(cls, ReconstructionAlgorithm) and cls.name == name
        assert listing[name]["plugin"] == module_name
    for module_name in plugin_manager.BUILTIN_PLUGINS:
        assert pm.get_plugin(module_name) is not None


def test_unknown_method_lists_the_installed_ones(maps):
    with pytest.raises(ValueError, match="Unknown reconstruction method 'nope'") as err:
        maps.reconstruct(method="nope")
    installed = str(err.value).split("Installed methods:")[1]
    for name in BUILTINS:
        assert name in installed


def test_two_plugins_with_the_same_name_are_refused(monkeypatch, maps):
    class OtherSIRT(ReconstructionAlgorithm):
        name = "sirt"
        summary = "an impostor"

        def reconstruct_slices(self, sinograms, projector):  # pragma: no cover - never runs
            raise AssertionError

    other = types.ModuleType("other_sirt_plugin")
    other.edxtomo_reconstruction_algorithms = hookspecs.hookimpl(lambda: [OtherSIRT])
    # a fresh manager built like get_plugin_manager(), plus the clashing plugin
    pm = plugin_manager.build_plugin_manager()
    pm.register(other, name="other_sirt")
    monkeypatch.setattr(plugin_manager, "get_plugin_manager", lambda: pm)
    message = r"Two reconstruction algorithms are called 'sirt'"
    with pytest.raises(ValueError, match=message) as err:
        plugin_manager.reconstruction_algorithms()
    # both classes are named, with their modules: the user can tell which plugins clash
    assert "hyperspy_edxtomo.reconstruction.algorithms.sirt.SIRT" in str(err.value) and "OtherSIRT" in str(err.value)
    with pytest.raises(ValueError, match=message):
        het.list_algorithms()
    with pytest.raises(ValueError, match=message):
        maps.reconstruct(method="fbp")


# -- an external plugin package ------------------------------------------------------


def test_external_algorithm_is_listed(example_plugin):
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT)}
    assert eps[EXTERNAL_METHOD] == EXTERNAL_MODULE
    pm = get_plugin_manager()  # loads the entry points, importing the plugin
    module = sys.modules[EXTERNAL_MODULE]
    assert Path(module.__file__).parent == example_plugin  # the installed copy
    assert pm.get_plugin(EXTERNAL_METHOD) is module
    assert _hookimpl_names(pm, module) == ["edxtomo_denoisers", "edxtomo_reconstruction_algorithms"]

    listing = het.list_algorithms()
    assert BUILTINS | {EXTERNAL_METHOD} <= set(listing)
    info = listing[EXTERNAL_METHOD]
    assert info["plugin"] == EXTERNAL_MODULE
    assert info["summary"].startswith("Normalised back-projection")
    assert set(info["parameters"]) == {"normalise"}
    normalise = info["parameters"]["normalise"]
    assert normalise["default"] is True
    assert normalise["allowed"] == "True or False"
    assert "ray lengths" in normalise["description"]


def test_external_algorithm_reconstructs(example_plugin, maps):
    vol = maps.reconstruct(method=EXTERNAL_METHOD)
    assert isinstance(vol, ElementVolume)
    assert vol.elements == maps.elements
    data = vol.to_numpy()
    assert data.shape == (len(maps.elements), 24, 24, 24)
    assert np.all(np.isfinite(data))
    step = vol.history[-1]
    assert step["step"] == "reconstruction" and step["method"] == EXTERNAL_METHOD
    assert step["parameters"]["parameters"] == {"normalise": True}
    assert step["parameters"]["n_z"] == 24

    # normalised back-projection is exactly the first SIRT iteration from zero
    sirt1 = maps.reconstruct(method="sirt", iterations=1).to_numpy()
    np.testing.assert_allclose(data, sirt1, rtol=1e-4, atol=1e-5 * sirt1.max())
    # and a blurred version of the converged SIRT: same particle, same counts
    sirt = maps.reconstruct(method="sirt").to_numpy()
    for e, element in enumerate(maps.elements):
        r = np.corrcoef(data[e].ravel(), sirt[e].ravel())[0, 1]
        assert r > 0.6, (element, r)
        assert data[e].sum() == pytest.approx(sirt[e].sum(), rel=0.1), element

    plain = maps.reconstruct(method=EXTERNAL_METHOD, normalise=False)
    assert plain.history[-1]["parameters"]["parameters"] == {"normalise": False}
    assert not np.allclose(plain.to_numpy(), data)


@pytest.mark.parametrize(
    "method, parameters, match",
    [
        (EXTERNAL_METHOD, {"normalise": "yes"}, r"Bad value 'yes' for parameter 'normalise' of method 'example_backprojection'"),
        (EXTERNAL_METHOD, {"iterations": 3}, r"Unknown parameter\(s\) \['iterations'\].*normalise"),
        ("sirt", {"iterations": 0}, r"Bad value 0 for parameter 'iterations' of method 'sirt'"),
        ("sirt", {"normalise": True}, r"Unknown parameter\(s\) \['normalise'\].*iterations"),
    ],
)
def test_external_parameters_are_validated_like_builtins(example_plugin, maps, method, parameters, match):
    with pytest.raises(ValueError, match=match):
        maps.reconstruct(method=method, **parameters)


def test_external_denoiser_gets_a_context_and_returns_a_result(example_plugin):
    # under one count per pixel: the example picks a 3 px box, and records the pixel size it was given
    counts = np.random.default_rng(0).poisson(0.3, (2, 5, 16, 16))
    maps = het.element_maps_from_array(counts, [-40, -20, 0, 20, 40], ["S", "Zn"], pixel_size_nm=0.5)
    out = maps.denoise("example_box", size=0)
    step = out.history[-1]
    assert step["step"] == "denoising" and step["method"] == "example_box"
    # what the plugin chose from the counts and read from the context is recorded
    assert step["parameters"]["size_used"] == 3 and step["parameters"]["size"] == 0
    assert step["parameters"]["pixel_size_nm"] == pytest.approx(maps.pixel_size[0])
    raw, den = maps.to_numpy().astype(float), out.to_numpy()
    np.testing.assert_allclose(den.sum(axis=(2, 3)), raw.sum(axis=(2, 3)), rtol=1e-5)
    assert den.std() < raw.std()


class _ArrayReturner(ReconstructionAlgorithm):
    name = "returns_an_array"
    summary = "breaks the contract"

    def reconstruct_series(self, counts, context):
        return np.zeros((len(context.elements), context.projector.n_z, *counts.shape[2:]), np.float32), []


def test_a_plugin_breaking_the_result_contract_is_named(monkeypatch, maps):
    other = types.ModuleType("array_returner")
    other.edxtomo_reconstruction_algorithms = hookspecs.hookimpl(lambda: [_ArrayReturner])
    pm = plugin_manager.build_plugin_manager()
    pm.register(other, name="array_returner")
    monkeypatch.setattr(plugin_manager, "get_plugin_manager", lambda: pm)
    with pytest.raises(TypeError, match=r"'returns_an_array' returned tuple.*ReconstructionResult"):
        maps.reconstruct(method="returns_an_array")


class _OldPrepare(ReconstructionAlgorithm):
    name = "old_prepare"
    summary = "written for the earlier prepare signature"

    def prepare(self, sinograms, projector, show_progressbar=False, background=None):
        self.chosen = {"n_x": projector.n_x}

    def reconstruct_slices(self, sinograms, projector, background=None):
        return np.zeros((sinograms.shape[0], projector.n_z, projector.n_x), np.float32)


class _SeedReader(_OldPrepare):
    name = "seed_reader"

    def prepare(self, sinograms, context, background=None):
        self.chosen = {"seed_seen": context.seed, "n_x": context.projector.n_x}


@pytest.mark.parametrize("cls, seed", [(_OldPrepare, 0), (_SeedReader, 7)])
def test_prepare_gets_the_context_and_the_earlier_signature_is_named(monkeypatch, maps, cls, seed):
    """prepare(sinograms, context, background): the seed of reconstruct(seed=) reaches it and is recorded;
    a plugin still on prepare(sinograms, projector, show_progressbar, background) gets a TypeError naming it."""
    other = types.ModuleType("prepare_plugin")
    other.edxtomo_reconstruction_algorithms = hookspecs.hookimpl(lambda: [cls])
    pm = plugin_manager.build_plugin_manager()
    pm.register(other, name="prepare_plugin")
    monkeypatch.setattr(plugin_manager, "get_plugin_manager", lambda: pm)
    if cls is _OldPrepare:
        with pytest.raises(TypeError, match=r"'old_prepare'.*earlier contract.*prepare\(self, sinograms, context"):
            maps.reconstruct(method=cls.name)
        return
    vol = maps.reconstruct(method=cls.name, seed=seed)
    params = vol.history[-1]["parameters"]
    assert params["seed"] == seed and params["parameters"]["seed_seen"] == seed


def test_cli_lists_algorithms(example_plugin, capsys):
    from hyperspy_edxtomo.cli import main

    assert main(["algorithms"]) == 0
    out = capsys.readouterr().out
    for name in BUILTINS | {EXTERNAL_METHOD}:
        assert f"{name}: " in out
    assert f"[{EXTERNAL_MODULE}]" in out
    assert "[hyperspy_edxtomo.reconstruction.algorithms.sirt]" in out
    assert "normalise = True  (True or False)" in out
    assert "iterations = 50" in out
    assert "filter = 'ram-lak'" in out


def test_a_plugin_that_cannot_be_imported_is_skipped_with_a_warning(monkeypatch):
    broken = importlib.metadata.EntryPoint(name="broken_plugin", value="edxtomo_no_such_module_xyz",
                                           group=hookspecs.PROJECT)
    found = importlib.metadata.entry_points

    def entry_points(**kw):
        eps = list(found(**kw))
        return eps + [broken] if kw.get("group") == hookspecs.PROJECT else eps

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    with pytest.warns(UserWarning, match=r"plugin 'broken_plugin' \(edxtomo_no_such_module_xyz\) cannot be imported"):
        pm = plugin_manager.build_plugin_manager()
    monkeypatch.setattr(plugin_manager, "get_plugin_manager", lambda: pm)
    assert BUILTINS <= set(het.list_algorithms())
