"""Engines that build the cells where the data live when they outgrow one machine.

The default engine is polars (:mod:`analysis.cells`, streaming, one machine). The Spark engine
(:mod:`analysis.engines.spark`, optional extra ``spark``) does the row-level work of the
attribution and the aggregation in a Spark cluster and brings back only the cells; the
statistics then run as usual. Both give the same cells, row for row
(``tests/engines/test_spark_parity.py``).
"""
