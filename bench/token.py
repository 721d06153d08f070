"""Prints an HS256 access token as the users service issues it (admin, one hour), signed with $SECRET."""
import base64, hashlib, hmac, json, os, time, uuid

b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
claims = {"sub": str(uuid.uuid4()), "email": "bench@example.com", "role": "admin",
          "iat": now, "exp": now + 3600, "jti": str(uuid.uuid4()), "iss": "logicore"}
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
sig = hmac.new(os.environ["SECRET"].encode(), head.encode(), hashlib.sha256).digest()
print(head + "." + b64(sig))
