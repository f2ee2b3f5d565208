"""Outbound webhooks to the shop (Standard Webhooks): endpoints, signing, fan-out from the outbox, delivery."""
