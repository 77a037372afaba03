"""gcscoop_lib: the library behind the book "Generalisable prompt learning for vision-language
models", from zero-shot CLIP through CoOp, ProGrad and SAM to GCSCoOp."""

__version__ = "0.1.0"

from .chapter import open_chapter  # noqa: E402  (the first call every chapter makes)
from .models import load_clip  # noqa: E402
