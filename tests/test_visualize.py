"""The notebook plotting helpers draw what they claim: right cells, numbers, positions and data."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from minglm4v.rope import get_rope_index, vision_positions  # noqa: E402
from minglm4v.visualize import (boxes_to_pixels, draw_boxes, setup_notebook, show_attention,  # noqa: E402
                                show_mrope_sections, show_patch_grid, show_position_streams, show_rope_angles)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _texts(ax):
    return [(t.get_text(), *t.get_position()) for t in ax.texts]


def test_setup_notebook_seeds_and_sets_printing():
    setup_notebook(seed=3)
    a = torch.randn(3)
    setup_notebook(seed=3)
    assert torch.equal(a, torch.randn(3))
    assert str(torch.tensor([1 / 3])) == "tensor([0.3333])"
    assert str(torch.tensor([1e-6])) == "tensor([0.0000])"  # no scientific notation
    setup_notebook()  # leave the default seed for other tests


def test_patch_grid_numbers_windows_in_pixel_values_order():
    h, w = 4, 6  # 2 x 3 windows of 28 px
    fig = show_patch_grid(np.zeros((h * 14, w * 14, 3), np.uint8), torch.tensor([[1, h, w]]),
                          patch_numbers=True)
    ax = fig.axes[0]
    labels = _texts(ax)
    windows = [t for t in labels if t[0] in map(str, range(6)) and (t[1] - 14) % 28 == 0
               and (t[2] - 14) % 28 == 0]
    assert sorted(int(t[0]) for t in windows) == list(range(6))
    for k, x, y in windows:  # window k sits at window row k // 3, column k % 3
        assert (y // 28, x // 28) == divmod(int(k), 3)
    patches = [t for t in labels if t not in windows]
    assert len(patches) == h * w
    # patch with row number n lies in the patch grid cell that vision_positions gives row n
    rc = vision_positions(torch.tensor([[1, h, w]]), merge=2)
    for text, x, y in patches:
        assert [int(y // 14), int(x // 14)] == rc[int(text)].tolist()
    # internal patch boundaries: (h - 1) horizontal + (w - 1) vertical lines, window edges thicker
    assert len(ax.lines) == (h - 1) + (w - 1)
    assert sorted({line.get_linewidth() for line in ax.lines}) == [0.4, 1.6]


def test_patch_grid_without_patch_numbers_and_errors():
    fig = show_patch_grid(np.zeros((112, 56)), [1, 8, 4])
    assert len(fig.axes[0].texts) == 8 * 4 // 4
    with pytest.raises(ValueError, match="resize the image first"):
        show_patch_grid(np.zeros((100, 56, 3)), [1, 8, 4])
    with pytest.raises(ValueError, match="whole 2x2 merge windows"):
        show_patch_grid(np.zeros((42, 42, 3)), [1, 3, 3])
    with pytest.raises(ValueError, match=r"one \[t, h, w\] row"):
        show_patch_grid(np.zeros((56, 56, 3)), [[1, 4, 4], [1, 4, 4]])


def test_rope_angles_draws_cosine_of_each_requested_frequency():
    angles = torch.arange(6 * 3, dtype=torch.float32).reshape(6, 3) / 5  # (h*w, freqs) for 2 x 3
    fig = show_rope_angles(angles, (2, 3), freqs=[2, 0], labels=["a", "b"])
    assert len(fig.axes) == 2
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), np.cos(angles[:, 2].numpy()).reshape(2, 3),
                               rtol=1e-6)
    np.testing.assert_allclose(fig.axes[1].images[0].get_array(), np.cos(angles[:, 0].numpy()).reshape(2, 3),
                               rtol=1e-6)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    with pytest.raises(ValueError, match=r"\(h\*w, n_freqs\)"):
        show_rope_angles(angles, (3, 3), freqs=[0])


def test_attention_one_panel_per_map_with_boundaries():
    mask = torch.block_diag(torch.ones(3, 3), torch.ones(2, 2)).bool()
    weights = torch.rand(2, 5, 5)
    fig = show_attention(torch.stack([mask.float(), *weights]), titles=["m", "h0", "h1"], boundaries=[3])
    assert len(fig.axes) == 3
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), mask.numpy().astype(float))
    np.testing.assert_allclose(fig.axes[2].images[0].get_array(), weights[1].numpy(), rtol=1e-6)
    assert all(len(ax.lines) == 2 for ax in fig.axes)  # one horizontal + one vertical boundary
    assert len(show_attention(mask).axes) == 1  # a single (L, S) map
    with pytest.raises(ValueError, match=r"\(L, S\) or \(n, L, S\)"):
        show_attention(torch.zeros(5))


def test_position_streams_heatmap_shows_every_position():
    ids = torch.tensor([[5, 10] + [14] * 4 + [11, 6]])  # text, <boi>, 2x2 image, <eoi>, text
    types = (ids == 14).long()
    pos, _ = get_rope_index(ids, types, image_grid_thw=torch.tensor([[1, 4, 4]]))
    fig = show_position_streams(pos, tokens=[str(i) for i in ids[0].tolist()])
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), pos[:, 0].numpy())
    cells = {(round(x), round(y)): text for text, x, y in _texts(ax)}
    assert len(cells) == 3 * ids.shape[1]
    assert [cells[(i, 2)] for i in range(8)] == ["0", "1", "2", "3", "2", "3", "4", "5"]  # p_w
    assert [t.get_text() for t in ax.get_yticklabels()] == ["p_t", "p_h", "p_w"]
    with pytest.raises(ValueError, match=r"\(3, L\) or \(3, 1, L\)"):
        show_position_streams(torch.zeros(2, 4))


def test_mrope_sections_colour_each_frequency_by_its_stream():
    fig = show_mrope_sections([[2, 3, 3], [8, 12, 12]])
    assert len(fig.axes) == 2
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), [[0, 0, 1, 1, 1, 2, 2, 2]])
    assert fig.axes[1].images[0].get_array().shape == (1, 32)
    assert [t.get_text() for t in fig.axes[1].texts] == ["t x8", "h x12", "w x12"]


def test_boxes_to_pixels_rescales_0_1000():
    assert boxes_to_pixels([(100, 200, 500, 1000)], width=300, height=50) == [(30, 10, 150, 50)]
    with pytest.raises(ValueError, match="0 <= x1 <= x2 <= 1000"):
        boxes_to_pixels([(600, 0, 500, 10)], 100, 100)


def test_draw_boxes_outlines_each_box_in_pixels():
    image = Image.new("RGB", (200, 100), "white")
    answer = "top left <|begin_of_box|>[100,200,500,800]<|end_of_box|>"
    drawn = np.asarray(draw_boxes(image, answer, line_width=1)).astype(int)
    red = (drawn == (255, 0, 0)).all(-1)
    ys, xs = np.nonzero(red)  # 0..1000 -> x 20..100, y 20..80 (last pixel 99, 79)
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (20, 20, 99, 79)
    assert not red[50, 60] and red[20, 60] and red[79, 60] and red[50, 20] and red[50, 99]
    assert np.asarray(image).min() == 255  # the input is left alone
    assert np.array_equal(np.asarray(draw_boxes(image, [(100, 200, 500, 800)], line_width=1)), drawn)
    with pytest.raises(ValueError, match="no box to draw"):
        draw_boxes(image, "<answer>red</answer>")
