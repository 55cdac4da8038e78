// A websocket that reconnects with exponential backoff (capped at 30 s) after a server restart.
// liveSocket(path, {onMessage, onState}) -> {send(obj)}
function liveSocket(path, handlers) {
  const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  let socket = null;
  let delayMs = 500;
  const state = (s) => handlers.onState && handlers.onState(s);
  function connect() {
    socket = new WebSocket(scheme + window.location.host + path);
    socket.onopen = () => { delayMs = 500; state("connected"); };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (handlers.onMessage) handlers.onMessage(message);
    };
    socket.onclose = (event) => {
      if (event.code === 4401) { state("logged out"); return; }
      state("reconnecting");
      setTimeout(connect, delayMs);
      delayMs = Math.min(delayMs * 2, 30000);
    };
  }
  connect();
  return {
    send(obj) {
      if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify(obj)); return true; }
      return false;
    },
  };
}
