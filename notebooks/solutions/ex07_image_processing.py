"""07 · image processing: tokens of a photo; the pixel_values row of a patch; unpatchify."""

from einops import rearrange

from minglm4v.processing.image import smart_resize


def tokens_for(height, width):
    """Exercise 1: the checkpoint's budget (the smart_resize defaults); one token per 28x28."""
    h, w = smart_resize(2, height, width)
    return h * w // 28**2


def row_of(r, c, gw, merge_size=2):
    """Exercise 2: rows go window by window (raster order of windows), then inside the window."""
    window = (r // merge_size) * (gw // merge_size) + c // merge_size
    return window * merge_size**2 + (r % merge_size) * merge_size + c % merge_size


def unpatchify_one(pixel_values, grid_thw, patch_size=14, merge_size=2):
    """Exercise 3: (N, C*T*P*P) rows of one image -> (T, C, H, W) frames."""
    t, h, w = [int(v) for v in grid_thw]
    return rearrange(pixel_values, "(gt bh bw mi mj) (c tp p1 p2) -> (gt tp) c (bh mi p1) (bw mj p2)",
                     gt=t, bh=h // merge_size, bw=w // merge_size, mi=merge_size, mj=merge_size,
                     c=3, p1=patch_size, p2=patch_size)
