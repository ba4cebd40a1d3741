"""The contract shared by every part of mlpipe: standard library only.

One copy of each rule, imported by the API (Lambda), the job scripts (SageMaker containers or
local processes), the inference hooks and the model server (inside every model archive):

- ``catalog``  algorithms, the tasks they serve and their hyperparameter constraints;
- ``metrics``  evaluation metrics per task, and which way is better;
- ``columns``  how a column's values map to a signature type;
- ``scoring``  the MLflow scoring protocol (and Vertex AI's ``instances``), parsed and checked
  against a model signature;
- ``archive``  reading and safely extracting ``model.tar.gz``.

It ships as a package directory beside the scripts (``sagemaker_jobs/mlcontract``), inside
each model archive (``code/mlcontract``) and in the Lambda bundle, and is always imported as
``mlcontract``. Nothing here may import a third-party module.
"""

from __future__ import annotations

# Bumped when a change makes old model archives unreadable by new code (or vice versa).
CONTRACT_VERSION = 2
