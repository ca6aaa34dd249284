"""The outside world: S3 (one client factory), ffprobe, Bedrock, the Dagster instance's
location, the content-hash cache of local folders."""
