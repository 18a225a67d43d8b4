"""GPU check: every GPU measurement of the project in one run, for the day a GPU is lent.

``python -m searchers.tools.gpu_check --out DIR [--dry-run] [--only ITEM,...] [--images SPEC]``
writes ``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` (a summary table, then each item's own
table). Each item is a function run under its own time cap (the caps add up to 380 s, and
the run stops starting items once 450 s have passed, so the check ends well inside 8 minutes
on one GPU):

==================  =====  ==================================================================
item                cap s  what (the code it calls)
==================  =====  ==================================================================
``zoo_fp32``        70     the zoo on CUDA, NTIRE 2024-2026 protocol and ours, FP32
                           (:func:`proxies.protocol.compare.compare`: ``test_demo.py``'s
                           protocol beside :mod:`proxies.profile.command`'s steady state)
``zoo_fp16``        60     the same in FP16
``lut_fidelity``    80     the DARTS hardware table measured on CUDA, checked against 30
                           whole random nets
                           (:func:`searchers.differentiable.latency_table.validate_table`,
                           as ``python -m searchers.tools.benchmark lut``)
``darts_step``      70     DARTS search-step time and peak memory, full and sampling memory
                           modes (:func:`searchers.tools.benchmark.bench_step`)
``amp_retrain``     60     a short mixed-precision retraining (:class:`searchers.training.
                           trainer.Retrainer` with ``optim.amp=true``): time per iteration,
                           peak memory, validation PSNR
``onnxruntime_cuda`` 40    ONNX Runtime's CUDA execution provider next to torch eager, through
                           ``MeasureSettings.backend`` (:mod:`proxies.measure.latency`)
==================  =====  ==================================================================

An item whose prerequisite is missing is recorded as ``skipped`` with the reason, never faked:
no CUDA device, no ``CUDAExecutionProvider`` in onnxruntime, no ``optim.amp`` in the retraining
config, float16 kernels missing. An item that raises is ``failed`` (with the error), one that
runs past its cap is ``timeout``. The exit code is 1 when any item failed or timed out, else 0.

``--dry-run`` runs every item on the CPU at tiny sizes (a few tiny images written to
``DIR/_dry_images``, a 1-cell supernet, 2 retraining iterations), so the tests exercise the
whole script without a GPU. Its figures mean nothing.

Images for the protocol items: ``--images`` (as ``python -m proxies.profile --images``);
default Set14's HR folder (``../shared/datasets/Set14/HR``) where this checkout has it, else
the embedded ``default:val`` set, both downscaled x4 with the project's degradation.

The modules: :mod:`~searchers.tools.gpu_check.context` (what an item sees and returns, the time
cap, the dry run's images), the items grouped by what they measure
(:mod:`~searchers.tools.gpu_check.zoo_items`: the zoo under the challenge protocol and ours;
:mod:`~searchers.tools.gpu_check.search_items`: the DARTS table and step;
:mod:`~searchers.tools.gpu_check.training_items`: AMP retraining;
:mod:`~searchers.tools.gpu_check.runtime_items`: ONNX Runtime against torch eager),
:mod:`~searchers.tools.gpu_check.runner` (the items table, running them, the JSON and Markdown)
and :mod:`~searchers.tools.gpu_check.command` (the command line).
"""
