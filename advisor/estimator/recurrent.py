"""Recurrent layers: cuDNN's persistent kernels run their time steps one after another.

A recurrent op (``OpCost.serial_steps``: sequence length x layers x directions) takes at least its steps x
``RECURRENT_STEP_S``; on a GPU it takes that plus the GEMMs cuDNN runs beside the persistent kernel (the op's
``gemms``, priced by tiles at cuDNN's rate: ``advisor.estimator.ops`` plans them, ``time.ops_time_detail`` prices
them).  The measurements: docs/estimates.md, "Recurrent layers".
"""

from __future__ import annotations

#: One dependent time step of cuDNN's ``RNN_blockPersist_*`` kernels, whatever the batch (H200 profile of lstm-lm:
#: 2.3-2.5 us per step forward and backward).
RECURRENT_STEP_S = 2.4e-6
