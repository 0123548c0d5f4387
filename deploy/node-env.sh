# rlm-hypervisor: the environment of every node of a launched cluster (cluster.yaml,
# deploy/cluster-gcp.yaml source it before `ray start`, and append it to ~/.bashrc).
# Ray's processes inherit it, so the engine and the API read their settings from it.
export PATH="$HOME/venv/bin:$PATH"
# The Serve proxy runs the proxy guard (timeouts, connection caps, crash answers).
export RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=serve_app.guard:proxy_middlewares
# State on the head's disk (the engine's core runs on the head).
export RLM_STATE_DIR="$HOME/rlm-state"
export RLM_ENV=production
# TLS terminates at the load balancer in front of port 8000.
export RLM_SERVER__BEHIND_TLS_PROXY=true
# The JWT secret, the same on every node (any replica checks tokens): the launcher copies it
# from the operator's machine (file_mounts). Other secrets (an LM API key) the same way, or
# from the cloud's secret store; never in this file.
export RLM_AUTH__SECRET_FILE="$HOME/rlm-secrets/jwt-secret"
