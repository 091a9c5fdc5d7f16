"""active-learners: live, exact Active Learner counts per tenant, on Kafka and faust."""
