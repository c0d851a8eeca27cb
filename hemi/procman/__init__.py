"""Running a stage: the single-process runner now; the leader/worker manager comes later."""
