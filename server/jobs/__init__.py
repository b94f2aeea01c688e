"""Jobs as a service: a durable store (`store`), the service the routes call (`service.JobService`),
worker processes (`worker`, `pool`) and dedup of records across jobs (`dedup`)."""
