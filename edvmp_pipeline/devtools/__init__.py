"""Development tools: the local S3 stack (SeaweedFS, from the ``local`` extra) and the sample
media generator. Not needed by a production deployment."""
