"""The CUDA paths give what the CPU paths give (the projector, the solvers, every method, the networks).

Skipped without a CUDA device: CI has none; these run where one is lent. Every method the user
reaches with ``cuda=None`` on a GPU machine is compared with the same call and ``cuda=False``.
"""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hyperspy_edxtomo import datasets  # noqa: E402
from hyperspy_edxtomo.base.provenance import get_history  # noqa: E402
from hyperspy_edxtomo.reconstruction import solvers  # noqa: E402
from hyperspy_edxtomo.reconstruction.projector import Projector  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device: the CUDA paths are checked where one is")

TILTS = np.linspace(-60, 60, 13)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@pytest.fixture(scope="module")
def scene():
    return datasets.simulate_scene("dot", size=32, counts_per_tilt=1000, haadf_snr=50, seed=3)


CHOICES = ("lam", "haadf_weight", "guide_strength", "data_term", "criterion")


def _chosen(volume):
    """The automatic choices a run made, per element where they are per element."""
    def pick(used):
        if any(k in used for k in CHOICES):
            return {k: used[k] for k in CHOICES if k in used}
        return {k: pick(v) for k, v in used.items() if isinstance(v, dict)}
    return pick(get_history(volume)[-1]["parameters"]["parameters"])


def _same_choices(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_choices(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return bool(np.isclose(a, b, rtol=1e-3))
    return a == b


# -- the projector -----------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [0.0, 1.5])
def test_numpy_batches_on_cuda_are_the_cpu_matrix(offset):
    """backend="astra" (numpy in and out) on a GPU: the same matrix as on the CPU, its exact adjoint."""
    rng = np.random.default_rng(0)
    slices = rng.random((6, 24, 32)).astype(np.float32)
    sino = rng.random((6, 13, 32)).astype(np.float32)
    cpu = Projector(TILTS, n_x=32, n_z=24, axis_offset_px=offset, cuda=False)
    gpu = Projector(TILTS, n_x=32, n_z=24, axis_offset_px=offset, cuda=True)
    assert _rel(gpu.forward(slices), cpu.forward(slices)) < 1e-5
    assert _rel(gpu.adjoint(sino), cpu.adjoint(sino)) < 1e-5
    lhs = float(np.vdot(gpu.forward(slices).astype(np.float64), sino))
    rhs = float(np.vdot(slices.astype(np.float64), gpu.adjoint(sino)))
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)


def test_torch_cuda_product_is_the_cpu_matrix_and_the_same_every_run():
    rng = np.random.default_rng(1)
    x = rng.random((24 * 32, 5)).astype(np.float32)
    P = Projector(TILTS, n_x=32, n_z=24, axis_offset_px=0.7, cuda=True)
    on_gpu = P.torch_product(torch.from_numpy(x).cuda(), True)
    on_cpu = P.torch_product(torch.from_numpy(x), True).numpy()
    assert _rel(on_gpu.cpu().numpy(), on_cpu) < 1e-5
    assert torch.equal(P.torch_product(torch.from_numpy(x).cuda(), True), on_gpu)
    back_gpu = P.torch_product(torch.from_numpy(on_cpu).cuda(), False).cpu().numpy()
    assert _rel(back_gpu, P.torch_product(torch.from_numpy(on_cpu), False).numpy()) < 1e-5


@pytest.mark.parametrize("data_term", ["least_squares", "poisson"])
def test_tv_solver_cpu_and_cuda_agree(data_term):
    rng = np.random.default_rng(2)
    views = rng.poisson(0.5, (6, 13, 32)).astype(np.float32)
    out = {}
    for cuda in (False, True):
        P = Projector(TILTS, n_x=32, cuda=cuda)
        y = solvers.sinograms_to_cols(views, P.device)
        out[cuda] = solvers.tv(P, y, 1.0, 100, data_term=data_term).cpu().numpy()
    assert _rel(out[True], out[False]) < 1e-3


# -- every method through reconstruct(): cuda=True against cuda=False --------------------------------


@pytest.mark.parametrize(("method", "params", "tol"), [
    ("fbp", {}, 1e-5),
    ("sirt", {"iterations": 50}, 1e-4),
    ("tv", {"lam": 1.0, "iterations": 100}, 1e-3),
    ("tv", {"lam": 1.0, "iterations": 100, "couple_elements": True}, 1e-3),
    ("l1", {"lam": 1.0, "iterations": 100}, 1e-3),
    ("tv", {}, 1e-2),  # lam="auto": the same held-out scores choose the same strength
    ("fused", {}, 1e-2),
])
def test_reconstruct_cpu_and_cuda_agree(scene, method, params, tol):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = scene.reconstruct(method=method, cuda=False, **params)
        gpu = scene.reconstruct(method=method, cuda=True, **params)
    assert get_history(gpu)[-1]["parameters"]["cuda"] is True
    assert get_history(cpu)[-1]["parameters"]["cuda"] is False
    assert _rel(gpu.data, cpu.data) < tol
    # the automatic choices (strengths, weights) are the same on both devices
    if method not in ("fbp", "sirt"):
        assert _chosen(cpu), "the run recorded no choice"
    assert _same_choices(_chosen(gpu), _chosen(cpu)), (_chosen(gpu), _chosen(cpu))


# -- the networks on CUDA ----------------------------------------------------------------------------

TINY = dict(levels=2, channels=8, steps=150, patch_size=32, batch_size=8, eval_every=50, tta=False, seed=3,
            learning_rate=5e-3)
FAST = dict(denoiser="gaussian", lam=2.0, mbir_iterations=30, enhancer_steps=40, patch_size=32, angle_step=3.0)


def test_denoise_deep_on_cuda_is_seeded_and_near_the_cpu_result():
    maps = datasets.quantum_dot_element_maps(size=32, seed=0)
    gpu = maps.denoise_deep(cuda=True, show_progressbar=False, **TINY)
    again = maps.denoise_deep(cuda=True, show_progressbar=False, **TINY)
    cpu = maps.denoise_deep(cuda=False, show_progressbar=False, **TINY)
    # the same seed on the same device gives the same maps (deterministic kernels, fixed-order layers)
    np.testing.assert_array_equal(again.data, gpu.data)
    # another device draws the same batches; float rounding differs, so the nets differ a little
    assert np.corrcoef(gpu.data.ravel(), cpu.data.ravel())[0, 1] > 0.98


def test_two_step_on_cuda_is_seeded():
    maps = datasets.quantum_dot_element_maps(kind="CdSe/ZnS", size=32, seed=3)
    a = maps.reconstruct("two_step", cuda=True, **FAST)
    b = maps.reconstruct("two_step", cuda=True, **FAST)
    cpu = maps.reconstruct("two_step", cuda=False, **FAST)
    assert get_history(a)[-1]["parameters"]["cuda"] is True
    np.testing.assert_array_equal(b.data, a.data)
    assert np.corrcoef(a.data.ravel(), cpu.data.ravel())[0, 1] > 0.98
