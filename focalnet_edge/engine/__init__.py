"""TensorRT: the parser support check, the strongly typed build, plans and their facts.

One job per module, imported by their own paths (this package re-exports nothing):

    gpu.py      this machine: TensorRT present, its version, the platform, the GPU (one parser each
                for TensorRT versions and compute capabilities)
    check.py    will TensorRT's ONNX parser take this file (no TensorRT needed; trt_operators.json)
    config.py   the builder's options, their checks, the optimization profile, Polygraphy's CreateConfig
    cache.py    the timing cache's key and whether a folder's cache is reused here
    build.py    plans from the precision-typed ONNX files of an output folder, and their facts
    plans.py    what a plan needs to run (`requires`), whether it runs here, its I/O, its layers
    adopt.py    a plan built by trtexec or nvinfer taken into a folder
    command.py  the CLI's `engine` command

Running plans is the runner layer's job (`runtime/tensorrt.py`), which reads plan facts from here.
"""
