// Starts GraphiQL with the explorer plugin. Loaded from the gateway's own origin, so the
// page's Content-Security-Policy needs no inline script.
(function () {
  "use strict";

  // GraphiQL's dialogs add <style> elements; they carry this page's nonce, so the policy
  // allows them without 'unsafe-inline'.
  window.__webpack_nonce__ = document.currentScript.nonce;

  var config = JSON.parse(document.getElementById("graphiql-config").textContent);

  // Editor state is kept per set of opening tabs: new example operations appear
  // instead of tabs saved by an older release.
  function namespacedStorage(prefix) {
    var keys = function () {
      var found = [];
      for (var i = 0; i < window.localStorage.length; i++) {
        var key = window.localStorage.key(i);
        if (key !== null && key.indexOf(prefix) === 0) found.push(key);
      }
      return found;
    };
    return {
      getItem: function (key) { return window.localStorage.getItem(prefix + key); },
      setItem: function (key, value) { window.localStorage.setItem(prefix + key, value); },
      removeItem: function (key) { window.localStorage.removeItem(prefix + key); },
      clear: function () { keys().forEach(function (key) { window.localStorage.removeItem(key); }); },
      get length() { return keys().length; },
    };
  }

  var url = window.location.pathname;
  var httpFetcher = GraphiQL.createFetcher({ url: url });

  function isSubscription(params, opts) {
    var document = opts && opts.documentAST;
    if (!document) return /^\s*subscription\b/.test(params.query || "");
    var operations = document.definitions.filter(function (d) {
      return d.kind === "OperationDefinition";
    });
    var chosen = params.operationName
      ? operations.filter(function (d) { return d.name && d.name.value === params.operationName; })[0]
      : operations[0];
    return Boolean(chosen) && chosen.operation === "subscription";
  }

  // Subscriptions over GraphQL over SSE (graphql-sse, distinct connections mode): a POST to
  // this origin, so the policy's connect-src 'self' covers it and the header editor's
  // credentials go with it. Stopping the subscription in GraphiQL aborts the stream.
  async function* subscribe(params, headers) {
    var controller = new AbortController();
    try {
      var response = await fetch(url, {
        method: "POST",
        headers: Object.assign(
          { "content-type": "application/json", accept: "text/event-stream" },
          headers || {}
        ),
        body: JSON.stringify(params),
        signal: controller.signal,
      });
      var type = response.headers.get("content-type") || "";
      if (type.indexOf("text/event-stream") !== 0) {
        yield await response.json();
        return;
      }
      var reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      var buffer = "";
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) return;
        buffer += chunk.value;
        var messages = buffer.split(/\r?\n\r?\n/);
        buffer = messages.pop();
        for (var i = 0; i < messages.length; i++) {
          var event = null;
          var data = "";
          messages[i].split(/\r?\n/).forEach(function (line) {
            if (line.indexOf("event:") === 0) event = line.slice(6).trim();
            else if (line.indexOf("data:") === 0) data += line.slice(5).trim();
          });
          if (event === "complete") return;
          if (event === "next" && data) yield JSON.parse(data);
        }
      }
    } finally {
      controller.abort();
    }
  }

  function fetcher(params, opts) {
    if (isSubscription(params, opts)) return subscribe(params, opts && opts.headers);
    return httpFetcher(params, opts);
  }
  var explorer = GraphiQLPluginExplorer.explorerPlugin();

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      plugins: [explorer],
      defaultTabs: config.tabs,
      defaultQuery: config.tabs[0].query,
      defaultHeaders: config.headers,
      isHeadersEditorEnabled: true,
      // Headers may hold an API key: never written to the browser's storage.
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: config.showHeaders ? "headers" : true,
      inputValueDeprecation: true,
      storage: namespacedStorage(config.storagePrefix),
    })
  );
})();
