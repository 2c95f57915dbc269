module nats-tenancy.test/pause

go 1.24
