"""The decision call: may this org use N more of a metric, credits or a feature — and hold it."""
