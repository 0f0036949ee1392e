"""Item images: finding them by item id and reading them safely.

A file that cannot be used as an image (missing, unreadable, corrupt, truncated, in a format outside
``ALLOWED_FORMATS`` whatever its extension, not an image at all, or a decompression bomb past Pillow's
``Image.MAX_IMAGE_PIXELS``) never raises: :func:`load_image` returns None and emits exactly one
:class:`ImageWarning` that names the file. Callers treat such an item as having no image.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from pathlib import Path

from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Pillow guesses the format from the bytes, whatever the extension; without a list an EPS named .png would reach
# its Ghostscript plugin. Only these decoders ever see a user's file.
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
# warnings.catch_warnings swaps process-wide filters; the app loads images from several threads at once
_WARNING_FILTERS = threading.Lock()


class ImageWarning(UserWarning):
    """An item image that could not be read; the item is treated as having no image."""


def find_item_image(folder, item_id) -> Path | None:
    """The image of ``item_id`` in ``folder``: ``<item_id>.jpg``, ``.jpeg`` or ``.png`` (first found), else None.

    The suffix is matched in lower case first, then upper case (``.JPG``). Ids that would leave the folder
    (containing a path separator, or ``.``/``..``) have no image.
    """
    if folder is None:
        return None
    name = str(item_id)
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        return None
    folder = Path(folder)
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def load_image(path, mode: str = "RGB") -> Image.Image | None:
    """Read ``path`` into a fully decoded PIL image in ``mode`` ("RGB" or "L"), or None with one warning.

    EXIF orientation is applied, the first frame of an animation is used, and transparency is composited
    onto white. A decompression-bomb warning from Pillow counts as an error.
    """
    path = Path(path)
    try:
        with _WARNING_FILTERS, warnings.catch_warnings():
            # Pillow's own warnings (bad EXIF, ...) are not the caller's business; a bomb is an error
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=ALLOWED_FORMATS) as image:
                image.load()
                # a broken orientation tag is not worth losing the picture
                with contextlib.suppress(Exception):
                    image = ImageOps.exif_transpose(image)
                return _to_mode(image, mode)
    except Image.DecompressionBombError as err:
        reason = f"decompression bomb ({err})"
    except Image.DecompressionBombWarning as err:
        reason = f"decompression bomb ({err})"
    except FileNotFoundError:
        reason = "file not found"
    except IsADirectoryError:
        reason = "is a folder"
    except PermissionError:
        reason = "permission denied"
    except Image.UnidentifiedImageError:
        reason = f"not a {', '.join(ALLOWED_FORMATS[:-1])} or {ALLOWED_FORMATS[-1]} image"
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, TypeError) as err:
        reason = f"corrupt or truncated ({type(err).__name__}: {err})"
    warnings.warn(
        f"{path}: cannot be read as an image ({reason}); the item is treated as having no image.",
        ImageWarning,
        stacklevel=2,
    )
    return None


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert(mode) if image.mode != mode else image.copy()  # a copy is detached from the file
