"""Monitoring settings (environment variables, prefix ``MLPIPE_``). To be merged into
``chalicelib.settings.Settings`` by the integration; kept apart until then."""

from __future__ import annotations

from functools import cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MonitoringSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLPIPE_", extra="ignore")

    # Namespace of our metrics (EMF and PutMetricData). Endpoint metrics can be read from
    # SageMaker's own "AWS/SageMaker" on AWS instead (see INTEGRATION-monitoring.md).
    metrics_namespace: str = "mlpipe"
    endpoint_metrics_namespace: str = "mlpipe"
    # How often model servers flush and the local stack pulls their metrics (<= 10 s).
    metrics_flush_seconds: float = Field(default=10.0, gt=0, le=10)
    # Local store retention (CloudWatch keeps 1-minute data 15 days).
    metrics_retention_days: int = Field(default=15, ge=1, le=455)
    # Data capture: object-store prefix (S3 DestinationS3Uri on AWS) and default sampling.
    capture_prefix: str = "datacapture"
    default_sampling_percent: float = Field(default=100.0, ge=0, le=100)
    # Scheduled drift checks: how often, over how much recent traffic, and when to flag.
    drift_schedule_minutes: int = Field(default=60, ge=5, le=1440)
    drift_window_hours: int = Field(default=24, ge=1, le=24 * 30)
    drift_psi_threshold: float = Field(default=0.2, gt=0)
    drift_p_value_threshold: float = Field(default=0.05, gt=0, lt=1)
    # Offline alarm evaluation period; on AWS CloudWatch evaluates.
    alarm_evaluation_seconds: int = Field(default=60, ge=10, le=3600)
    # AWS: the SNS topic alarms notify (the rollback/retrain Lambda subscribes to it).
    alarm_topic_arn: str = ""


@cache
def get_monitoring_settings() -> MonitoringSettings:
    return MonitoringSettings()
