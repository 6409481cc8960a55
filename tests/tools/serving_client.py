"""Talks to a running `pneumo serve` with the clients hospital IT would use, and prints what it
got as one JSON object.

usage: serving_client.py v2 HOST:PORT MODEL IMAGE [TOKEN]
           Triton's own client (tritonclient.http): liveness, readiness, model metadata, then
           the image as a BYTES input in the binary tensor data extension.
       serving_client.py metrics URL
           Prometheus' own parser (prometheus_client) over GET URL/metrics: every sample.

Exit 0 when the client could do everything, 1 otherwise.
"""
import json
import sys
import urllib.request


def v2(address, model, image, token=None):
    import numpy as np
    import tritonclient.http as http

    headers = {"Authorization": "Bearer " + token} if token else None
    client = http.InferenceServerClient(url=address)
    out = {
        "live": client.is_server_live(headers=headers),
        "ready": client.is_server_ready(headers=headers),
        "model_ready": client.is_model_ready(model, headers=headers),
        "metadata": client.get_model_metadata(model, headers=headers),
    }
    with open(image, "rb") as f:
        data = f.read()
    tensor = http.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([data], dtype=np.object_), binary_data=True)
    outputs = [http.InferRequestedOutput(name, binary_data=False)
               for name in ("probability", "positive", "area_px", "rle", "gate")]
    result = client.infer(model, [tensor], outputs=outputs, request_id="triton-1", headers=headers)
    response = result.get_response()
    out["id"] = response.get("id")
    out["model_version"] = response.get("model_version")
    out["probability"] = float(result.as_numpy("probability")[0])
    out["positive"] = bool(result.as_numpy("positive")[0])
    out["area_px"] = int(result.as_numpy("area_px")[0])
    rle = result.as_numpy("rle")[0]
    out["rle"] = rle.decode() if isinstance(rle, bytes) else str(rle)
    gate = result.as_numpy("gate")[0]
    out["gate"] = gate.decode() if isinstance(gate, bytes) else str(gate)
    return out


def metrics(url):
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics") as response:
        content_type = response.headers.get("Content-Type")
        text = response.read().decode()
    samples = []
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        for s in family.samples:
            samples.append({"name": s.name, "labels": s.labels, "value": s.value})
    return {"content_type": content_type, "families": families, "samples": samples}


def main():
    if sys.argv[1] == "v2":
        out = v2(*sys.argv[2:])
    else:
        out = metrics(sys.argv[2])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
