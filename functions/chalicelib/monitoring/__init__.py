"""Monitoring: endpoint and pipeline metrics, data capture, drift, accuracy feedback,
alarms and dashboards (issue 8). Names and formats shared with the model server and the
jobs live in ``mlcontract.monitoring`` and ``mlcontract.capture``."""
