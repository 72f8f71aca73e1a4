"""Groupon Partner Network (GPN) Transaction API: store, routes and OpenAPI paths."""
