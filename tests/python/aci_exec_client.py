"""An ACI exec session driven the way `az container exec` drives one (azure-cli's
`_start_exec_pipe_linux`): `websocket.WebSocketApp`, the password as the first (text) frame on open,
stdin as binary frames, every frame received printed as terminal output, and the session over when the
server closes the socket.

Usage: aci_exec_client.py WEBSOCKET_URI PASSWORD CA_FILE STDIN_TEXT
Prints one JSON object: {"output", "close_code", "close_reason", "error"}.
"""

import json
import sys
import threading
import time

import websocket


def main():
    uri, password, ca_file, stdin_text = sys.argv[1:5]
    output = []
    result = {"close_code": None, "close_reason": None, "error": None}

    def flush_stdin(ws):
        # az batches keystrokes every 10 ms; here they are all there at once, a line at a time.
        time.sleep(0.2)
        for line in stdin_text.splitlines(keepends=True):
            if not ws.sock:
                return
            ws.send(line.encode(), opcode=websocket.ABNF.OPCODE_BINARY)
            time.sleep(0.05)

    def on_open(ws):
        ws.send(password)
        threading.Thread(target=flush_stdin, args=[ws], daemon=True).start()

    def on_message(ws, message):
        output.append(message.decode("utf-8", "replace") if isinstance(message, bytes) else message)

    def on_error(ws, error):
        result["error"] = repr(error) + " " + str(error)

    def on_close(ws, code, reason):
        result["close_code"] = code
        result["close_reason"] = reason.decode() if isinstance(reason, bytes) else reason

    app = websocket.WebSocketApp(uri, on_open=on_open, on_message=on_message, on_error=on_error,
                                 on_close=on_close)
    app.run_forever(sslopt={"ca_certs": ca_file})
    result["output"] = "".join(output)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
