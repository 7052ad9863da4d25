"""two_step and end_to_end: the paper's deep reconstructions, trained on small simulated series."""

import numpy as np
import pytest

import hyperspy_edxtomo as het
from hyperspy_edxtomo import datasets
from hyperspy_edxtomo.analysis import metrics
from hyperspy_edxtomo.reconstruction.deep_models import EndToEndModel, dense_angles
from hyperspy_edxtomo.signals import ElementMapTiltSeries, ElementVolume

# small and quick: seconds per reconstruction on a 2-core CPU
# Q^S needs some 80 steps to beat the bare re-projection on every element: at 40 it did by a few %
# and not at all once the MBIR converged better (tv's multilevel start)
FAST = dict(denoiser="gaussian", lam=2.0, mbir_iterations=30, enhancer_steps=80, patch_size=32, angle_step=3.0)
E2E_FAST = dict(steps=30, patch_size=16, channels=4, levels=2)


@pytest.fixture(scope="module")
def qd():
    maps = datasets.quantum_dot_element_maps(kind="CdSe/ZnS", size=32, seed=3)
    return maps, maps.metadata.Simulation.ground_truth.data


@pytest.fixture(scope="module")
def two_step_run(qd):
    maps, _ = qd
    return maps.reconstruct("two_step", return_intermediates=True, **FAST)


def test_two_step_volume_metadata_and_intermediates(qd, two_step_run):
    maps, truth = qd
    vol, inter = two_step_run
    assert isinstance(vol, ElementVolume)
    assert vol.data.shape == (4, 32, 32, 32) and vol.elements == maps.elements
    assert vol.voxel_size == maps.pixel_size
    assert np.all(vol.data >= 0)
    step = vol.history[-1]
    assert step["method"] == "two_step"
    used = step["parameters"]["parameters"]
    assert set(used) == set(maps.elements)  # per element: lam, Q^S scores, wedge check
    assert used["Zn"]["lam"] == 2.0 and used["Zn"]["denoiser_used"]["method"] == "gaussian"
    assert set(used["Zn"]["wedge_relative_change"]) == {"measured range", "missing wedge"}
    # every stage can be inspected, with the right classes and geometry
    assert isinstance(inter["denoised"], ElementMapTiltSeries)
    np.testing.assert_allclose(inter["denoised"].tilts, maps.tilts)
    assert isinstance(inter["mbir"], ElementVolume) and inter["mbir"].data.shape == vol.data.shape
    for name in ("reprojections", "enhanced"):
        assert isinstance(inter[name], ElementMapTiltSeries)
        np.testing.assert_allclose(inter[name].tilts, dense_angles(3.0))
        assert inter[name].data.shape == (4, 60, 32, 32)
    # the denoiser keeps the dose of every map
    np.testing.assert_allclose(inter["denoised"].data.sum(axis=(2, 3)), maps.data.sum(axis=(2, 3)), rtol=1e-4)
    for e, el in enumerate(maps.elements):
        assert metrics.pearson(vol.data[e], truth[e]) > 0.75, el


def test_enhancer_learns_self_consistency_at_measured_angles(two_step_run):
    _, inter = two_step_run
    report = inter["report"]["enhancer"]
    before, after = np.array(report["deviance_reprojection"]), np.array(report["deviance_enhanced"])
    # trained only on the measured views, Q^S must fit them better than the bare re-projection
    assert np.all(after < before)
    losses = report["losses"]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    wedge = inter["report"]["wedge_check"]
    assert len(wedge["relative_change_per_angle"]) == 60


def test_two_step_without_enhancer_gives_back_the_mbir_volume(qd):
    maps, _ = qd
    vol, inter = maps.inav[:, 3].reconstruct("two_step", return_intermediates=True, **{**FAST, "enhancer_steps": 0})
    # FBP of the MBIR volume's full-angle re-projections: the same volume, through the same projector
    assert metrics.pearson(vol.data[0], inter["mbir"].data[0]) > 0.95
    np.testing.assert_array_equal(inter["enhanced"].data, inter["reprojections"].data)


@pytest.mark.parametrize("lazy", [False, True])
def test_two_step_is_seeded_and_works_lazy(qd, two_step_run, lazy):
    maps, _ = qd
    m = maps.as_lazy() if lazy else maps
    vol = m.reconstruct("two_step", **FAST)
    np.testing.assert_allclose(vol.data, two_step_run[0].data, rtol=1e-5, atol=1e-6)


def test_two_step_with_the_deep_denoiser(qd):
    maps, _ = qd
    vol, inter = maps.inav[:, 2:].reconstruct(
        "two_step", return_intermediates=True, **{**FAST, "denoiser": "deep"}, denoiser_parameters={"steps": 20}
    )
    assert vol.history[-1]["parameters"]["parameters"]["S"]["denoiser_used"]["method"] == "deep"
    assert inter["denoiser_model"] is not None


@pytest.mark.parametrize(
    "params, message",
    [
        ({"denoiser": "nope"}, "Installed methods"),
        ({"mbir": "sirt"}, "one of 'tv', 'l1'"),
        ({"angle_step": 0}, "angle_step"),
        ({"denoiser_parameters": {"sigma": -1}}, "sigma"),
    ],
)
def test_two_step_bad_parameters(qd, params, message):
    maps, _ = qd
    with pytest.raises(ValueError, match=message):
        maps.reconstruct("two_step", **{**FAST, **params})


@pytest.mark.parametrize("method, params", [("two_step", FAST), ("end_to_end", {"weights": "unused.pt"})])
def test_too_few_tilts(qd, method, params):
    maps, _ = qd
    # refused before any work, and before the weights file is even opened
    with pytest.raises(ValueError, match="at least 3 tilts"):
        maps.inav[5:7].reconstruct(method, **params)


@pytest.fixture(scope="module")
def e2e_weights(qd, tmp_path_factory):
    maps, _ = qd
    path = tmp_path_factory.mktemp("weights") / "t.pt"
    model = het.train_end_to_end(maps, out=path, two_step=FAST, **E2E_FAST)
    return model, path


def test_end_to_end_trains_saves_and_reconstructs(qd, e2e_weights):
    maps, truth = qd
    model, path = e2e_weights
    losses = model.training_log["losses"]
    assert len(losses) == 30 and np.mean(losses[-5:]) < np.mean(losses[:5])
    loaded = EndToEndModel.load(path)
    assert loaded.elements == list(maps.elements) and loaded.voxel_size_nm == pytest.approx(maps.pixel_size[0])
    vol, inter = maps.reconstruct("end_to_end", weights=str(path), denoiser="gaussian", return_intermediates=True)
    assert isinstance(vol, ElementVolume) and vol.data.shape == (4, 32, 32, 32)
    # one pass of the loaded network over FBP(Q^D y): the plugin is exactly that
    np.testing.assert_allclose(vol.data, loaded.predict(inter["fbp_denoised"].data), rtol=1e-5, atol=1e-6)
    assert vol.history[-1]["method"] == "end_to_end"
    for e in range(4):
        assert metrics.pearson(vol.data[e], truth[e]) > 0.6


def test_end_to_end_refuses_without_or_with_wrong_weights(qd, e2e_weights, tmp_path):
    maps, _ = qd
    model, path = e2e_weights
    with pytest.raises(ValueError, match="train_end_to_end"):
        maps.reconstruct("end_to_end")
    with pytest.raises(FileNotFoundError, match="train_end_to_end"):
        maps.reconstruct("end_to_end", weights=str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a weights file")
    with pytest.raises(ValueError, match="not an end-to-end weights file"):
        maps.reconstruct("end_to_end", weights=str(junk))
    # other elements
    with pytest.raises(ValueError, match="trained on elements"):
        maps.inav[:, :2].reconstruct("end_to_end", weights=str(path))
    # other pixel size
    other = het.element_maps_from_array(maps.data, maps.tilts, maps.elements, pixel_size_nm=0.5)
    with pytest.raises(ValueError, match="nm voxels"):
        other.reconstruct("end_to_end", weights=str(path))
    # weights that do not fit the network their settings describe
    import torch

    blob = torch.load(path, weights_only=True)
    blob["config"]["channels"] = 8
    bad = tmp_path / "bad.pt"
    torch.save(blob, bad)
    with pytest.raises(ValueError, match="do not fit the network"):
        maps.reconstruct("end_to_end", weights=str(bad))


def test_end_to_end_stored_denoiser(qd, tmp_path):
    maps, _ = qd
    sub = maps.inav[:, 2:]
    path = tmp_path / "t.pt"
    model = het.train_end_to_end(
        sub, out=path, two_step={**FAST, "denoiser": "deep", "denoiser_parameters": {"steps": 10}}, **E2E_FAST
    )
    assert model.get_denoiser() is not None
    vol = sub.reconstruct("end_to_end", weights=str(path))  # default: the Q^D saved with the weights
    assert vol.history[-1]["parameters"]["parameters"]["denoiser_used"]["pretrained"] is True
    no_qd = tmp_path / "no_qd.pt"
    model.set_denoiser(None)
    model.save(no_qd)
    with pytest.raises(ValueError, match="hold no Q\\^D"):
        sub.reconstruct("end_to_end", weights=str(no_qd))


def test_train_end_to_end_reuses_two_step_results(qd, e2e_weights):
    """A two_step result already computed is the target as it is: the same network as reconstructing it
    again (everything seeded), without the second two_step; results that do not belong are refused."""
    import torch

    maps, _ = qd
    model, _ = e2e_weights
    result = maps.reconstruct("two_step", return_intermediates=True, **FAST)
    reused = het.train_end_to_end(maps, results=result, **E2E_FAST)
    assert reused.training_log["targets"] == "given two_step results"
    assert model.training_log["targets"] == "reconstructed with two_step"
    for a, b in zip(model.net.state_dict().values(), reused.net.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="not both"):
        het.train_end_to_end(maps, results=result, two_step=FAST, **E2E_FAST)
    with pytest.raises(ValueError, match="2 two_step results for 1"):
        het.train_end_to_end(maps, results=[result, result], **E2E_FAST)
    with pytest.raises(ValueError, match="other tilts"):
        het.train_end_to_end(maps.inav[1:], results=result, **E2E_FAST)
    tv = maps.reconstruct("tv", iterations=10, return_intermediates=True)
    with pytest.raises(ValueError, match="made by 'tv'"):
        het.train_end_to_end(maps, results=tv, **E2E_FAST)
    with pytest.raises(TypeError, match="volume, intermediates"):
        het.train_end_to_end(maps, results=[result[0]], **E2E_FAST)
    with pytest.raises(ValueError, match="no 'fbp_denoised' volume"):
        het.train_end_to_end(maps, results=(result[0], {}), **E2E_FAST)
    other = {**result[1], "fbp_denoised": result[1]["fbp_denoised"].inav[:2]}
    with pytest.raises(ValueError, match="fbp_denoised does not match its volume"):
        het.train_end_to_end(maps, results=(result[0], other), **E2E_FAST)


def test_train_end_to_end_bad_input(qd):
    maps, _ = qd
    with pytest.raises(ValueError, match="at least one"):
        het.train_end_to_end([])
    with pytest.raises(ValueError, match="same elements"):
        het.train_end_to_end([maps, maps.inav[:, :2]], two_step=FAST)
    with pytest.raises(ValueError, match="Unknown end-to-end settings"):
        EndToEndModel(["Zn"], widths=3)


def test_command_line_two_step_and_end_to_end(qd, tmp_path, capsys):
    import hyperspy.api as hs

    from hyperspy_edxtomo.cli import main

    maps, _ = qd
    sub = maps.inav[:, 3]
    sub.save(tmp_path / "maps.hspy")
    params = [a for k, v in FAST.items() for a in ("--param", f"{k}={v}")]
    out = tmp_path / "out"
    assert main(["--quiet", "reconstruct", str(tmp_path / "maps.hspy"), "--method", "two_step", *params, "--out", str(out)]) == 0
    vol = hs.load(out / "volume_two_step.hspy")
    assert isinstance(vol, ElementVolume) and vol.history[-1]["method"] == "two_step"
    assert vol.history[-1]["parameters"]["parameters"]["lam"] == FAST["lam"]
    # end_to_end: refused without weights, with a message saying how to get them
    assert main(["--quiet", "reconstruct", str(tmp_path / "maps.hspy"), "--method", "end_to_end", "--out", str(out)]) == 2
    assert "train_end_to_end" in capsys.readouterr().err
    weights = tmp_path / "t.pt"
    two = [a for k, v in FAST.items() for a in ("--two-step-param", f"{k}={v}")]
    net = [a for k, v in E2E_FAST.items() for a in ("--param", f"{k}={v}")]
    assert main(["--quiet", "train-end-to-end", str(tmp_path / "maps.hspy"), "--out", str(weights), *two, *net]) == 0
    assert main(["--quiet", "reconstruct", str(tmp_path / "maps.hspy"), "--method", "end_to_end", "--weights",
                 str(weights), "--param", "denoiser=gaussian", "--out", str(out)]) == 0
    assert hs.load(out / "volume_end_to_end.hspy").history[-1]["method"] == "end_to_end"
    # bad input names the file
    (tmp_path / "volume.hspy").write_bytes(b"")
    assert main(["--quiet", "reconstruct", str(tmp_path / "missing.hspy"), "--out", str(out)]) == 2
    assert "missing.hspy" in capsys.readouterr().err


def test_two_step_runs_on_maps_that_are_not_counts(qd):
    """Smoothed maps (not counts): Q^D chosen on held-out pixels (blind-spot U-Net or Gaussian) instead of
    count splitting, the MBIR strength from held-out views, and a volume close to that of the counts."""
    from scipy import ndimage

    maps, truth = qd
    zn = maps.element("Zn")
    smooth = zn.deepcopy()
    smooth.data = ndimage.gaussian_filter(zn.data.astype(np.float32), (0, 0, 1, 1))
    fast = {k: v for k, v in FAST.items() if k not in ("denoiser", "lam")}
    vol_c = zn.reconstruct("two_step", denoiser_parameters={"steps": 30, "eval_every": 10}, **fast)
    vol_s = smooth.reconstruct("two_step", denoiser_parameters={"steps": 30, "eval_every": 10}, **fast)
    used = vol_s.history[-1]["parameters"]["parameters"]
    assert used["denoiser"] == "auto" and used["denoiser_used"]["method"] == "auto"
    assert used["denoiser_used"]["deep_parameters"] == {"steps": 30, "eval_every": 10}
    assert used["denoiser_used"]["elements"]["Zn"]["chosen"] in ("deep (blind spot)", "gaussian")
    assert used["data_kind"] == "continuous"
    assert used["mbir_lam_selection"]["lam_selection"]["criterion"] == "held_out_views"
    used_c = vol_c.history[-1]["parameters"]["parameters"]
    assert used_c["denoiser_used"]["method"] == "deep"
    assert used_c["mbir_lam_selection"]["lam_selection"]["criterion"] == "count_split"
    t = truth[maps.elements.index("Zn")]
    assert metrics.pearson(vol_s.data[0], t) > 0.9 * metrics.pearson(vol_c.data[0], t)


def test_two_step_models_the_background_and_scales_disguised_counts(qd):
    maps, _ = qd
    zn = maps.element("Zn")
    b = np.full(zn.data.shape, 0.5, np.float32)
    with_b = zn.deepcopy()
    with_b.data = (zn.data + np.random.default_rng(0).poisson(b)).astype(np.uint16)
    with_b.metadata.set_item("Tomography.background", b)
    fast = {**FAST, "lam": "auto"}
    vol, inter = with_b.reconstruct("two_step", return_intermediates=True, **fast)
    assert vol.history[-1]["parameters"]["background"].startswith("modelled")
    # Q^S and the final FBP see the signal only: the denoised maps lost the background's 0.5 per pixel
    mean_signal = inter["denoised"].data.mean()
    assert mean_signal < with_b.data.mean() - 0.3
    # normalised counts are reconstructed as the counts, the volume on the maps' scale
    scaled = zn.deepcopy()
    scaled.data = (zn.data / float(zn.data.max())).astype(np.float32)
    a = zn.reconstruct("two_step", **fast)
    s = scaled.reconstruct("two_step", **fast)
    assert s.history[-1]["parameters"]["parameters"]["counts_quantum"] == pytest.approx(1 / float(zn.data.max()))
    np.testing.assert_allclose(s.data * float(zn.data.max()), a.data, rtol=1e-3, atol=1e-3 * a.data.max())


def test_two_step_checks_its_input_before_training(qd):
    maps, _ = qd
    small = maps.element("Zn").isig[13:19, 13:19]
    with pytest.raises(ValueError, match="too small for Q.S with 4 levels"):
        small.reconstruct("two_step", **{**FAST, "enhancer_levels": 4, "denoiser": "deep"})


def test_train_end_to_end_refuses_settings_that_cannot_train_before_two_step():
    """steps=0 would save an untrained network: refused at once, from Python too."""
    import pytest

    import hyperspy_edxtomo as het
    from hyperspy_edxtomo import datasets
    from hyperspy_edxtomo.base.errors import InputError

    maps = datasets.quantum_dot_element_maps(size=16, seed=0)
    with pytest.raises(InputError, match="steps=0: steps must be a whole number >= 1"):
        het.train_end_to_end(maps, steps=0)
    with pytest.raises(InputError, match="learning_rate"):
        het.train_end_to_end(maps, learning_rate=-1.0)


def test_training_a_network_leaves_torch_global_generator_alone():
    """Q^S and T are seeded inside the training only: the user's torch random state is as it was, and the
    same seed still gives the same network."""
    import torch

    from hyperspy_edxtomo.reconstruction.deep_models import train_enhancer

    rng = np.random.default_rng(0)
    inputs = rng.random((4, 1, 16, 16)).astype(np.float32) + 0.5
    targets = rng.poisson(inputs).astype(np.float32)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    runs = [train_enhancer(inputs, targets, channels=4, levels=2, steps=3, batch_size=2, patch_size=16, seed=s)
            for s in (1, 1, 2)]
    assert torch.equal(torch.rand(3), expected)
    weights = [torch.cat([p.detach().ravel() for p in net.parameters()]) for net, _, _ in runs]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_fixed_order_layers_compute_what_torchs_layers_compute():
    """On CUDA the U-Nets pad by slices and pool by means (gradients added in a fixed order); the
    same functions, run here on the CPU, give torch's own padding, convolution and pooling."""
    import torch

    from hyperspy_edxtomo.base.errors import InputError
    from hyperspy_edxtomo.deep import networks

    gen = torch.Generator().manual_seed(0)
    for shape in ((2, 3, 9, 6), (1, 2, 6, 5, 7)):
        x = torch.randn(shape, generator=gen, requires_grad=True)
        spatial = len(shape) - 2
        for mode in ("reflect", "replicate"):
            for width in (1, 2):
                ours = x
                for d in range(2, x.ndim):
                    ours = networks.pad_by_slices(ours, d, width, mode)
                assert torch.equal(ours, torch.nn.functional.pad(x, (width,) * 2 * spatial, mode=mode))
            Conv = torch.nn.Conv2d if spatial == 2 else torch.nn.Conv3d
            conv = Conv(shape[1], 4, 3, padding=1, padding_mode=mode)
            ours = networks.conv_padded_by_slices(conv, x)
            theirs = conv(x)
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
            g_ours, = torch.autograd.grad(ours.square().sum(), x)
            g_theirs, = torch.autograd.grad(theirs.square().sum(), x)
            torch.testing.assert_close(g_ours, g_theirs, rtol=1e-4, atol=1e-5)
        pool = torch.nn.functional.avg_pool2d if spatial == 2 else torch.nn.functional.avg_pool3d
        torch.testing.assert_close(networks.mean_pool(x), pool(x, 2))
    with pytest.raises(InputError, match="padding mode 'circular'"):
        networks.pad_by_slices(torch.zeros(1, 1, 4, 4), 2, 1, "circular")
    cudnn = torch.backends.cudnn
    before = (cudnn.deterministic, cudnn.benchmark)
    with networks.deterministic_kernels():
        assert cudnn.deterministic and not cudnn.benchmark
    assert (cudnn.deterministic, cudnn.benchmark) == before
