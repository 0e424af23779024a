# pint's policy for the shipped rules (`pint lint` in alerts_test.go). Every aggregation keeps
# `cluster` and `job`: in a Thanos or Mimir setup holding many clusters and exporters, an alert that
# drops them stands for several clusters at once and names none.
rule {
  match {
    kind = "alerting"
  }
  aggregate ".+" {
    keep     = ["cluster", "job"]
    severity = "bug"
    comment  = "keep cluster and job through aggregations: one alert per cluster and exporter"
  }
}
