"""The memory cap on resized images: at most so many pixels, and so long a side.

Every path that resizes an image for a network (classification views, features, detection
scales, prediction) keeps the resized shorter side it was asked for, so the longer side
grows with the aspect ratio: a 3 x 5,000 strip at shorter side 688 would become
688 x 1,146,667 pixels (9.5 GB of float32 conv input). :func:`check_resized_size` refuses
such a resize before any memory is taken, with :class:`ImageTooLargeError` naming the sizes
and the cap; callers that know the file add its name with :meth:`ImageTooLargeError.at`.

The cap is on pixels, whatever option or aspect ratio led there: :data:`MAX_RESIZED_PIXELS`
(4096 x 4096, 8.7x the paper's largest detection input, 1600 x 1200 at scale 1200) and
:data:`MAX_RESIZED_SIDE` pixels a side.

This module imports nothing heavy.
"""

from __future__ import annotations

import os

from sppnet.errors import UserError

__all__ = ["MAX_RESIZED_PIXELS", "MAX_RESIZED_SIDE", "ImageTooLargeError", "check_resized_size"]

# 16.8 M pixels: 200 MB of float32 input; the conv1 maps of a full-width ZF-5 on it ~1.6 GB
MAX_RESIZED_PIXELS = 4096 * 4096
MAX_RESIZED_SIDE = 4 * 4096


class ImageTooLargeError(UserError):
    """A resize that would exceed :data:`MAX_RESIZED_PIXELS` or :data:`MAX_RESIZED_SIDE`.

    Its only argument is the message, so it survives a DataLoader worker's re-raise.
    """

    def at(self, path: str | os.PathLike[str]) -> ImageTooLargeError:
        """The same error, its message starting with the image file ``path``."""
        text = str(self)
        prefix = f"{os.fspath(path)}: "
        return self if text.startswith(prefix) else ImageTooLargeError(prefix + text)


def check_resized_size(
    size: tuple[int, int], resized: tuple[int, int], what: str, fix: str = ""
) -> None:
    """Refuse a resize of an image from ``size`` to ``resized`` beyond the cap.

    Args:
        size: the image's ``(height, width)``.
        resized: the ``(height, width)`` it would be resized to.
        what: the resize, e.g. ``"resized to shorter side 688"``.
        fix: how to avoid it, appended to the message (default: a smaller size or a crop).

    Raises:
        ImageTooLargeError: ``resized`` has more than :data:`MAX_RESIZED_PIXELS` pixels or
            a side longer than :data:`MAX_RESIZED_SIDE`.
    """
    h, w = int(resized[0]), int(resized[1])
    if max(h, w) > MAX_RESIZED_SIDE:
        over = f"a side over the memory cap of {MAX_RESIZED_SIDE} pixels"
    elif h * w > MAX_RESIZED_PIXELS:
        over = f"over the memory cap of {MAX_RESIZED_PIXELS / 1e6:.1f} M pixels"
    else:
        return
    raise ImageTooLargeError(
        f"image of {size[0]}x{size[1]} (HxW) {what} would be {h}x{w} = {h * w / 1e6:.1f} M "
        f"pixels, {over}; "
        + (fix or "use a smaller size, or crop the image to a less elongated shape")
    )
