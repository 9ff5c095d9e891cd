"""Image file check, and the worker process that runs it.

Run as a script (`python _image_worker.py`), not as a module of the package, so a worker imports PIL and the
standard library only: not torch and transformers, which importing the package pulls in (a worker stays at
about 30 MB instead of 350). Protocol: one JSON list of paths per line on stdin, one JSON list of results
per line on stdout, in order; a result is null (good) or [reason, detail]. With paths as arguments it checks
those and prints one line (used to re-check files one at a time after a worker crashed).
"""

import json
import os
import sys

DETAIL_CHARS = 300  # bounds a result line, so a worker never blocks on a full pipe (see images.py)


def check_image_file(path: str):
    """None when `path` is an image whose data decodes completely, else (reason, detail) with a SKIP_REASONS
    key: missing_image, unreadable_image (not identified as an image) or truncated_image (decoding fails).
    PIL's global `ImageFile.LOAD_TRUNCATED_IMAGES` is forced off for the check (someone may have set it, which
    would make PIL fill a truncated file's missing rows silently) and restored after."""
    from PIL import Image, ImageFile

    if not os.path.isfile(path):
        return ("missing_image", path) if not os.path.exists(path) else ("unreadable_image", f"{path}: not a file")
    try:
        image = Image.open(path)
    except Exception as error:  # any failure to identify the file: not an image we can use
        return "unreadable_image", f"{path}: {type(error).__name__}: {error}"[:DETAIL_CHARS]
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # workers are single-threaded; in-process callers check one at a time
    try:
        with image:
            # JPEG: decode at 1/8 scale. Every byte of entropy-coded data is still read and decoded (so a
            # truncated or corrupt file still fails); only the inverse DCT shrinks: 2-3x faster on SAM photos.
            image.draft(None, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except Exception as error:  # header fine, data not: truncated or corrupt
        return "truncated_image", f"{path}: {type(error).__name__}: {error}"[:DETAIL_CHARS]
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    return None


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps([check_image_file(path) for path in sys.argv[1:]]), flush=True)
        return
    for line in sys.stdin:
        print(json.dumps([check_image_file(path) for path in json.loads(line)]), flush=True)


if __name__ == "__main__":
    main()
