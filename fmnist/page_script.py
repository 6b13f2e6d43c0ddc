"""The script stamped into every HTML page we write (the results page, the sweep report).

It records script errors and, on ``<body>``, how many plotly charts the page holds (``data-charts``) and how many
drew an SVG (``data-charts-drawn``); :func:`fmnist.reproduce.html_check.render` reads them back after the page's
scripts ran. It lives on a low floor so that every layer that writes a page can stamp it.
"""

PAGE_JS = """
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
var __consoleError = console.error;
console.error = function () { window.__errors.push(Array.from(arguments).join(' ')); __consoleError.apply(console, arguments); };
window.addEventListener('load', function () {
  setTimeout(function () {
    var plots = document.querySelectorAll('.js-plotly-plot');
    var drawn = Array.from(plots).filter(function (p) { return p.querySelector('svg.main-svg'); }).length;
    document.body.setAttribute('data-charts', String(plots.length));
    document.body.setAttribute('data-charts-drawn', String(drawn));
    document.getElementById('js-errors').textContent = window.__errors.join('\\n');
  }, 500);
});
"""
