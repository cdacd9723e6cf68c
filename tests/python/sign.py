#!/usr/bin/env python3
"""Signs a webhook body with a provider's own library and prints the headers as JSON.

    sign.py SCHEME SECRET BODY_FILE     SCHEME: svix | standardwebhooks | stripe
"""
import datetime
import json
import sys
import time

scheme, secret, body_file = sys.argv[1:4]
body = open(body_file, "rb").read().decode("utf-8")
now = datetime.datetime.now(tz=datetime.timezone.utc)
msg_id = "msg_" + str(int(time.time() * 1e6))

if scheme == "svix":
    from svix.webhooks import Webhook
    sig = Webhook(secret).sign(msg_id, now, body)
    headers = {"svix-id": msg_id, "svix-timestamp": str(int(now.timestamp())), "svix-signature": sig}
    Webhook(secret).verify(body, headers)  # the library agrees with itself
elif scheme == "standardwebhooks":
    from standardwebhooks.webhooks import Webhook
    sig = Webhook(secret).sign(msg_id, now, body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": sig}
    Webhook(secret).verify(body, headers)
elif scheme == "stripe":
    import stripe
    ts = int(now.timestamp())
    sig = stripe.WebhookSignature._compute_signature(f"{ts}.{body}", secret)
    header = f"t={ts},v1={sig}"
    stripe.WebhookSignature.verify_header(body, header, secret, tolerance=300)
    headers = {"Stripe-Signature": header}
else:
    sys.exit(f"unknown scheme {scheme}")
print(json.dumps(headers))
