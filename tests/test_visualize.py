"""The notebook plotting helpers draw what they claim: right cells, numbers, positions and data."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from minglm4v.model.rope import get_rope_index, vision_positions  # noqa: E402
from minglm4v.processing.image import CLIP_MEAN, CLIP_STD, patchify, unpatchify  # noqa: E402
from minglm4v.study.visualize import (  # noqa: E402
    boxes_to_pixels,
    draw_boxes,
    setup_notebook,
    show_attention,
    show_decode_positions,
    show_differences,
    show_distributions,
    show_maps,
    show_mrope_sections,
    show_patch_grid,
    show_patch_rows,
    show_position_streams,
    show_rope_angles,
    show_video_sampling,
    show_video_tokens,
)


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
    assert sorted({line.get_linewidth() for line in ax.lines}) == [0.6, 2.5]
    assert {line.get_color() for line in ax.lines if line.get_linewidth() == 2.5} == {"yellow"}  # window edges
    assert all(line.get_path_effects() for line in ax.lines)  # dark outline: visible on white
    assert all(t.get_bbox_patch() is not None for t in ax.texts)  # labels on a dark box: legible on white


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
    assert len(fig.axes) == 3 and fig.axes[2].get_ylabel() == "cos(angle)"  # 2 panels + colour bar
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), np.cos(angles[:, 2].numpy()).reshape(2, 3),
                               rtol=1e-6)
    np.testing.assert_allclose(fig.axes[1].images[0].get_array(), np.cos(angles[:, 0].numpy()).reshape(2, 3),
                               rtol=1e-6)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a", "b"]
    with pytest.raises(ValueError, match=r"\(h\*w, n_freqs\)"):
        show_rope_angles(angles, (3, 3), freqs=[0])


def test_attention_one_panel_per_map_with_boundaries():
    mask = torch.block_diag(torch.ones(3, 3), torch.ones(2, 2)).bool()
    weights = torch.rand(2, 5, 5)
    fig = show_attention(torch.stack([mask.float(), *weights]), titles=["m", "h0", "h1"], boundaries=[3])
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 3 and len(fig.axes) == 6  # each panel has its colour bar
    np.testing.assert_array_equal(panels[0].images[0].get_array(), mask.numpy().astype(float))
    np.testing.assert_allclose(panels[2].images[0].get_array(), weights[1].numpy(), rtol=1e-6)
    assert all(len(ax.lines) == 2 for ax in panels)  # one horizontal + one vertical boundary
    assert len(show_attention(mask).axes) == 2  # a single (L, S) map and its colour bar
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


def test_maps_share_one_symmetric_colour_scale_with_a_bar():
    maps = torch.tensor([[[1.0, -2.0]], [[0.5, 0.0]]])  # two 1 x 2 maps
    fig = show_maps(maps, ["a", "b"], label="score", marks=[(0, 1), (0, 0)])
    panels, bar = fig.axes[:2], fig.axes[2]
    assert bar.get_ylabel() == "score"
    for ax, m in zip(panels, maps):
        np.testing.assert_array_equal(ax.images[0].get_array(), m.numpy())
        assert ax.images[0].get_clim() == (-2.0, 2.0)
    assert [tuple(ax.lines[0].get_xydata()[0]) for ax in panels] == [(1, 0), (0, 0)]  # (col, row)
    fig = show_maps([torch.zeros(2, 2), torch.ones(3, 4)], ["small", "big"], label="x")
    assert fig.axes[1].images[0].get_array().shape == (3, 4)
    with pytest.raises(ValueError, match=r"2-D \(H, W\) each"):
        show_maps(maps[0], ["a"], label="x")


def _normalise(frames):  # (T, H, W, 3) uint8 -> (T, 3, H, W) CLIP-normalised
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]


def test_patch_rows_draw_each_row_as_its_patch():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, 56, 56, 3), dtype=np.uint8)
    rows, _ = patchify(_normalise(np.repeat(image, 2, axis=0)))
    fig = show_patch_rows(rows, n=6)
    assert [ax.get_title() for ax in fig.axes] == ["0\nw0", "1\nw0", "2\nw0", "3\nw0", "4\nw1", "5\nw1"]
    # row 2 is the patch below row 0 (merge-window order), row 4 the first of the next window
    for ax, (r, c) in zip([fig.axes[2], fig.axes[4]], [(14, 0), (0, 28)]):
        np.testing.assert_allclose(ax.images[0].get_array(), image[0, r:r + 14, c:c + 14] / 255, atol=1e-5)


def test_video_sampling_frames_the_sampled_frames_by_group():
    video = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 3), dtype=np.uint8)
    indices = [0, 2, 3, 4]
    rows, grid = patchify(_normalise(video[indices]))
    fig = show_video_sampling(video, indices, unpatchify(rows, grid)[0], [0, 1])
    top, bottom = fig.axes[:5], fig.axes[5:]
    edge = [tuple(ax.spines["top"].get_edgecolor()) for ax in top]
    assert edge[0] == edge[2] != edge[3] == edge[4]  # groups (0, 2) and (3, 4)
    assert top[1].spines["top"].get_linewidth() != 4  # frame 1 not sampled
    assert [ax.get_title() for ax in bottom[:4]] == ["group 0\n0 s"] * 2 + ["group 1\n1 s"] * 2
    assert not bottom[4].axison  # no fifth recovered frame
    np.testing.assert_allclose(bottom[3].images[0].get_array(), video[4] / 255, atol=1e-5)


def test_video_tokens_label_each_window_with_its_positions():
    video = np.random.default_rng(0).integers(0, 256, (4, 56, 84, 3), dtype=np.uint8)
    rows, grid = patchify(_normalise(video))  # [2, 4, 6]: 2 groups of 2 x 3 tokens
    positions = torch.tensor([[5] * 6 + [9] * 6, [5, 5, 5, 6, 6, 6, 9, 9, 9, 10, 10, 10],
                              [5, 6, 7, 5, 6, 7, 9, 10, 11, 9, 10, 11]])
    fig = show_video_tokens(unpatchify(rows, grid)[0], grid, positions, [0, 1])
    assert [ax.get_title() for ax in fig.axes] == ["group 0: 0 s\np_t = 5", "group 1: 1 s\np_t = 9"]
    labels = _texts(fig.axes[1])  # token n of a group sits in window (n // 3, n % 3) of 28 px
    assert [(text, x // 28, y // 28) for text, x, y in labels] == [
        (f"{h},{w}", n % 3, n // 3) for n, (h, w) in enumerate(positions[1:, 6:].T.tolist())]
    assert len(fig.axes[0].lines) == (2 - 1) + (3 - 1)  # window boundaries
    np.testing.assert_allclose(fig.axes[1].images[0].get_array(), video[2:].mean(0) / 255, atol=1e-5)
    with pytest.raises(ValueError, match=r"needs 4 frames and positions of shape \(3, 12\)"):
        show_video_tokens(unpatchify(rows, grid)[0], grid, positions[:, :6], [0, 1])


def test_decode_positions_plots_each_stream_and_shades_image_and_answer():
    ids = torch.tensor([[5, 10] + [14] * 4 + [11, 6, 7, 8]])
    types = (ids == 14).long()
    pos, _ = get_rope_index(ids, types, image_grid_thw=torch.tensor([[1, 4, 4]]))
    fig = show_decode_positions(pos, types, prompt_length=8)
    ax = fig.axes[0]
    for line, stream in zip(ax.lines[:3], pos[:, 0]):
        np.testing.assert_array_equal(line.get_ydata(), stream.numpy())
    spans = [p.get_x() for p in ax.patches]
    assert spans == [1.5, 7.5]  # image tokens 2..5, generated from 8


def test_distributions_one_bar_per_word_and_label():
    words = ["a", "b", "c"]
    p, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([1.0, 0.0, 0.0])
    fig = show_distributions(words, [("x", [("before", p), ("after", q)]), ("y", [("only", p)])],
                             ncols=3)
    first, second, spare = fig.axes
    np.testing.assert_allclose([b.get_height() for b in first.patches], [*p.tolist(), *q.tolist()])
    assert [t.get_text() for t in first.get_xticklabels()] == words
    assert len(second.patches) == 3 and not spare.axison


def test_differences_log_bars_with_exact_zeros_labelled():
    fig = show_differences(["a", "b", "c"], [0.0, 2e-6, 3e-7], tolerance=1e-5)
    ax = fig.axes[0]
    assert [round(b.get_width(), 12) for b in ax.patches] == [1e-9, 2e-6, 3e-7]  # 0 drawn at the floor
    assert [t.get_text() for t in ax.texts] == ["exactly 0"] and ax.texts[0].get_position()[1] == 0
    assert ax.get_xscale() == "log" and ax.lines[0].get_xdata()[0] == 1e-5
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
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
