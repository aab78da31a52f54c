"""KFP v2 study pipelines (compile, kfp.local run, submit) and the local MLflow tracking server."""
