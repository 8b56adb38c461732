"""The listener's Pub/Sub API transport (gRPC, Avro): client, schema cache, decoding, supervisor.

- pubsub_api.proto: the `eventbus.v1.PubSub` contract; pubsub_api_pb2.py/.pyi are generated from it
  (scripts/generate_pubsub.py).
- bitmap.py: `changedFields`/`nulledFields`/`diffFields` bitmaps -> field names.
- events.py: one received event (Avro payload + schema) -> the CDC message shape the pipeline reads, the same
  shape CometD delivers, so services/listener/normalize.py serves both transports.
- client.py: the grpc.aio calls with auth metadata, the schema cache and error trailers.
- supervisor.py: one Subscribe per topic with flow control, watchdog, resubscribe and checkpoints.
"""
