"""Running the open models on this machine through Hugging Face diffusers.

`kinds` and `weights` use the standard library only: `plan` and preflight read
them without importing torch. `runtime` is where torch and diffusers come in.
"""


class Interrupted(Exception):
    """Raised from a denoising step to stop a generation nobody waits for any more."""


#: what to do when `quantize = "fp8"` is set without torchao
FP8_NEEDS_TORCHAO = 'quantize = "fp8" needs torchao: pip install torchao'
