"""Chat (the course's WhatsApp): WebSocket gateways, receipts, offline delivery, groups, end-to-end encryption."""
