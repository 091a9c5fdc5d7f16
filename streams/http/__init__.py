"""The worker's HTTP side: the License Key details API, the dashboard, tokens, OpenAPI, and the
read model of the count topics they answer from."""
