"""Tools for the hardware a run may go to, apart from the trainer: the chips
(`accelerators`) and their compilers, installed apart from jax's own
backends (`compilers`), the train step's memory compiled for them (`memory`,
`memory_results`) and the one prepared script for a machine with an
accelerator (`device_check`). They depend on the trainer, never the reverse.
"""
