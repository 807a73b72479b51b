"""CartoonGAN models: released key layout, a hand-built functional reference, shapes, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from deeperfour.models.cartoongan import (
    CartoonDiscriminator,
    CartoonGANConfig,
    CartoonGANWeightsError,
    CartoonGenerator,
    load_released_cartoongan,
)

KEYS_TSV = Path(__file__).parents[1] / "fixtures" / "manifests" / "cartoongan_keys.tsv"
N_PAPER_PARAMS = 11_129_667


def released_manifest() -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) rows of the released generator, in file order, from keys.tsv."""
    rows = KEYS_TSV.read_text().strip().splitlines()[1:]  # skip the header
    out = []
    for row in rows:
        key, shape, _dtype, _kind = row.split("\t")
        out.append((key, tuple(int(s) for s in shape.split(",")) if shape else ()))
    return out


def random_released_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state_dict with the released keys/shapes and seeded random values (norm scales near 1)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in released_manifest():
        noise = torch.randn(shape, generator=gen)
        if key.endswith(".scale"):
            sd[key] = 1.0 + 0.1 * noise
        elif key.endswith(".weight"):
            sd[key] = 0.05 * noise
        else:  # conv biases and norm shifts
            sd[key] = 0.1 * noise
    return sd


def functional_reference(sd: dict[str, torch.Tensor], x_rgb: torch.Tensor) -> torch.Tensor:
    """The released generator written layer by layer with torch.nn.functional (BGR inside)."""

    def conv(x, name, stride=1, pad=0, reflect=0):
        if reflect:
            x = F.pad(x, (reflect,) * 4, mode="reflect")
        return F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=stride, padding=pad)

    def inorm(x, name):
        return F.instance_norm(x, weight=sd[f"{name}.scale"], bias=sd[f"{name}.shift"], eps=1e-9)

    def deconv(x, name):
        w, b = sd[f"{name}.weight"], sd[f"{name}.bias"]
        return F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)

    x = x_rgb[:, [2, 1, 0]]  # RGB -> BGR
    y = F.relu(inorm(conv(x, "conv01_1", reflect=3), "in01_1"))
    y = F.relu(inorm(conv(conv(y, "conv02_1", 2, 1), "conv02_2", 1, 1), "in02_1"))
    y = F.relu(inorm(conv(conv(y, "conv03_1", 2, 1), "conv03_2", 1, 1), "in03_1"))
    for i in range(4, 12):
        r = F.relu(inorm(conv(y, f"conv{i:02d}_1", reflect=1), f"in{i:02d}_1"))
        r = inorm(conv(r, f"conv{i:02d}_2", reflect=1), f"in{i:02d}_2")
        y = y + r
    y = F.relu(inorm(conv(deconv(y, "deconv01_1"), "deconv01_2", 1, 1), "in12_1"))
    y = F.relu(inorm(conv(deconv(y, "deconv02_1"), "deconv02_2", 1, 1), "in13_1"))
    y = torch.tanh(conv(y, "deconv03_1", reflect=3))
    return y[:, [2, 1, 0]]  # BGR -> RGB


@pytest.fixture(scope="module")
def paper_generator() -> CartoonGenerator:
    torch.manual_seed(0)
    return CartoonGenerator(CartoonGANConfig(variant="paper"))


@pytest.fixture(scope="module")
def released_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    sd = random_released_state_dict(seed=0)
    path = tmp_path_factory.mktemp("released") / "Shinkai_net_G_float.pth"
    torch.save(sd, path)
    return path, sd


def tiny_light_config() -> CartoonGANConfig:
    return CartoonGANConfig(variant="light", base_channels=8, n_res_blocks=2)


# ---------------------------------------------------------------- paper generator / released layout


def test_paper_keys_and_shapes_match_released_manifest(paper_generator):
    ours = [(k, tuple(v.shape)) for k, v in paper_generator.state_dict().items()]
    assert ours == released_manifest()
    assert len(ours) == 94


def test_paper_parameter_count(paper_generator):
    assert sum(p.numel() for p in paper_generator.parameters()) == N_PAPER_PARAMS


def test_released_loader_matches_functional_reference(released_file):
    path, sd = released_file
    model = load_released_cartoongan(path)
    assert model.style == "Shinkai"
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1  # RGB [-1, 1]
    with torch.inference_mode():
        got = model(x)
        want = functional_reference(sd, x)
    assert got.shape == x.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert want.std() > 0.01  # not a degenerate (constant) output


def test_released_wrapper_keeps_odd_sizes(released_file):
    model = load_released_cartoongan(released_file[0])
    x = torch.rand(1, 3, 30, 46) * 2 - 1
    with torch.inference_mode():
        assert model(x).shape == x.shape


def test_rejects_deoldify_file(tmp_path):
    path = tmp_path / "ColorizeArtistic_gen.pth"
    torch.save({"model": {"layers.0.0.weight": torch.zeros(64, 3, 7, 7)}, "opt": {}}, path)
    with pytest.raises(CartoonGANWeightsError, match="DeOldify") as err:
        load_released_cartoongan(path)
    assert path.name in str(err.value) and "\n" not in str(err.value)


def test_rejects_missing_and_wrong_shaped_keys(tmp_path, released_file):
    sd = dict(released_file[1])
    del sd["in13_1.shift"]
    sd["conv01_1.weight"] = torch.zeros(64, 3, 3, 3)
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "Broken_net_G_float.pth"
    torch.save(sd, path)
    with pytest.raises(CartoonGANWeightsError) as err:
        load_released_cartoongan(path)
    msg = str(err.value)
    assert path.name in msg and "\n" not in msg
    assert "1 missing (in13_1.shift)" in msg
    assert "1 unexpected (extra.weight)" in msg
    assert "conv01_1.weight [64, 3, 3, 3]!=[64, 3, 7, 7]" in msg


def test_rejects_truncated_and_non_torch_files(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"conv01_1.bias": torch.zeros(64)}, good)
    truncated = tmp_path / "Hayao_net_G_float.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "Paprika_net_G_float.pth"
    text.write_text("<html>404 not found</html>")
    for path in (truncated, text):
        with pytest.raises(CartoonGANWeightsError, match="not a readable torch file") as err:
            load_released_cartoongan(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_released_cartoongan(tmp_path / "missing.pth")


def test_rejects_own_checkpoint_with_a_hint(tmp_path):
    cfg = tiny_light_config()
    path = CartoonGenerator(cfg).save(tmp_path / "g.pt")
    with pytest.raises(CartoonGANWeightsError, match="from_checkpoint"):
        load_released_cartoongan(path)


# ---------------------------------------------------------------- light generator, checkpoints


@pytest.mark.parametrize("size", [(32, 32), (30, 46), (5, 7), (17, 64)])
def test_light_generator_output_size_equals_input(size):
    model = CartoonGenerator(tiny_light_config())
    x = torch.rand(2, 3, *size) * 2 - 1
    y = model(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0


def test_light_generator_uses_resize_conv_not_transposed_conv():
    model = CartoonGenerator(CartoonGANConfig(variant="light"))
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())
    assert model.cfg.channels == (32, 64, 128) and model.cfg.n_res_blocks == 4
    assert "in08_1.scale" in model.state_dict() and "deconv03_1.weight" in model.state_dict()


def test_light_generator_golden_values():
    torch.manual_seed(0)
    model = CartoonGenerator(tiny_light_config())
    x = torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        y = model(x)
    expected_corner = torch.tensor([-0.14293173, 0.01656225, -0.30480096])
    expected_center = torch.tensor([-0.16752858, -0.03878170, 0.02889733])
    torch.testing.assert_close(y[0, :, 0, 0], expected_corner, atol=1e-4, rtol=0)
    torch.testing.assert_close(y[0, :, 7, 11], expected_center, atol=1e-4, rtol=0)
    assert abs(y.mean().item() - (-0.07173525)) < 1e-4


def test_checkpoint_round_trip(tmp_path):
    cfg = tiny_light_config()
    torch.manual_seed(3)
    model = CartoonGenerator(cfg)
    path = model.save(tmp_path / "ckpt" / "cartoongan.pt", extra={"epoch": 7})
    assert sorted(p.name for p in path.parent.iterdir()) == ["cartoongan.pt"]  # no temp file left
    raw = torch.load(path, weights_only=True)
    assert raw["version"] == 1 and raw["epoch"] == 7 and raw["config"]["variant"] == "light"
    loaded = CartoonGenerator.from_checkpoint(path)
    assert loaded.cfg == cfg
    x = torch.rand(1, 3, 24, 28) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


def test_save_checkpoint_refuses_reserved_extra_keys(tmp_path):
    cfg = tiny_light_config()
    with pytest.raises(ValueError, match="reserved"):
        CartoonGenerator(cfg).save(tmp_path / "g.pt", extra={"model": 1})


# ---------------------------------------------------------------- discriminator


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_discriminator_output_at_quarter_resolution(norm):
    disc = CartoonDiscriminator(CartoonGANConfig(variant="light", d_base_channels=8, d_norm=norm))
    logits = disc(torch.rand(2, 3, 32, 48) * 2 - 1)
    assert logits.shape == (2, 1, 8, 12)
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in disc.modules())  # logits for BCE-with-logits


def test_chroma_anchor_moves_the_mean_chroma_to_the_inputs_and_keeps_luma():
    from deeperfour.film.color import rgb_to_yuv_t
    from deeperfour.models.cartoongan import anchor_chroma

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 20, generator=gen) * 1.2 - 0.6  # inside [-1, 1] with room: no clamping
    y = torch.rand(2, 3, 16, 20, generator=gen) * 0.6 - 0.3 + torch.tensor([0.2, 0.3, -0.3]).view(1, 3, 1, 1)
    z = anchor_chroma(y, x)
    (ly, uvy), (lz, uvz), (_, uvx) = (rgb_to_yuv_t((t + 1) / 2) for t in (y, z, x))
    torch.testing.assert_close(lz, ly, rtol=0, atol=1e-4)  # a pure chroma shift (YUV2RGB in 3 digits)
    torch.testing.assert_close(uvz.mean((2, 3)), uvx.mean((2, 3)), rtol=0, atol=1e-4)
    torch.testing.assert_close(uvz - uvz.mean((2, 3), keepdim=True), uvy - uvy.mean((2, 3), keepdim=True),
                               rtol=0, atol=1e-4)  # the spatial chroma of G stays
    g = CartoonGenerator(CartoonGANConfig(variant="light", base_channels=4, n_res_blocks=1,
                                          chroma="mean")).eval()
    with torch.no_grad():
        out = g(x)
    uv_out = rgb_to_yuv_t((out + 1) / 2)[1]
    torch.testing.assert_close(uv_out.mean((2, 3)), uvx.mean((2, 3)), rtol=0, atol=2e-2)


def test_input_chroma_is_the_photos_colors_under_gs_luma():
    from deeperfour.film.color import rgb_to_yuv_t
    from deeperfour.models.cartoongan import anchor_chroma

    gen = torch.Generator().manual_seed(1)
    lum = torch.rand(1, 1, 24, 24, generator=gen) * 0.4 + 0.3
    x = torch.cat([lum + 1.14 * 0.05, lum - 0.395 * -0.03 - 0.581 * 0.05, lum + 2.032 * -0.03], 1) * 2 - 1
    y = torch.rand(1, 3, 24, 24, generator=gen) * 1.6 - 0.8  # any colors
    z = anchor_chroma(y, x, "input")
    (ly, _), (lz, uvz) = rgb_to_yuv_t((y + 1) / 2), rgb_to_yuv_t((z + 1) / 2)
    torch.testing.assert_close(lz, ly, rtol=0, atol=1e-4)  # G's luma
    torch.testing.assert_close(uvz, torch.tensor([-0.03, 0.05]).view(1, 2, 1, 1).expand_as(uvz), rtol=0,
                               atol=1e-4)  # the photo's (here uniform) chroma
    with pytest.raises(ValueError, match="chroma='pastel'"):
        CartoonGANConfig(chroma="pastel")
