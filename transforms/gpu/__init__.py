"""The GPU (CuPy) backend: fused elementwise kernels for fitted steps, device statistics, a hybrid planner.

- :mod:`transforms.gpu.array`: ``xp`` (CuPy or NumPy) and device detection that never raises;
- :mod:`transforms.gpu.expr`, :mod:`transforms.gpu.ops`, :mod:`transforms.gpu.kernels`: step
  descriptions -> one fused CUDA ``ElementwiseKernel`` per column, and the same program evaluated
  with NumPy for checking on a CPU;
- :mod:`transforms.gpu.transfer`: Arrow buffers <-> device in chunks, double-buffered;
- :mod:`transforms.gpu.fit`: fit statistics on the device;
- :mod:`transforms.gpu.planner`: which step runs where, and why;
- :mod:`transforms.gpu.execute`: apply a fitted pipeline segment by segment.

CuPy is the optional extra ``prepflow[gpu]``; nothing here imports it unless a device is used.
See the "GPU backend (CuPy)" section of the README.
"""
