# Modal's Sandbox guide examples (modal.com/docs/guide/sandbox), unchanged but for the app name.
import modal

app = modal.App.lookup("sandbox-guide", create_if_missing=True)

sb = modal.Sandbox.create(app=app)

p = sb.exec("python", "-c", "print('hello')", timeout=3)
print(p.stdout.read())

p = sb.exec("bash", "-c", "for i in {1..3}; do echo tick $i; sleep 0.1; done", timeout=5)
for line in p.stdout:
    # Avoid double newlines by using end="".
    print(line, end="")

sb.terminate()

sandbox = modal.Sandbox.create(
    "bash",
    "-c",
    "while read line; do echo $line; done",
    app=app,
)

sandbox.stdin.write(b"foo bar\n")
sandbox.stdin.write_eof()
sandbox.stdin.drain()
sandbox.wait()
print(sandbox.stdout.read(), end="")
print("returncode", sandbox.returncode)
